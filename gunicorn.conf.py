"""gunicorn settings, read from the working directory (`gunicorn wallet_site.wsgi` from the
top level). Request lines over gunicorn's default 4094 bytes answer 414, and every error
gunicorn answers itself is in the API's JSON error shape (wallet_site/gunicorn_errors.py)."""

from wallet_site import gunicorn_errors

gunicorn_errors.install()
