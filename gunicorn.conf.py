"""gunicorn settings, read from the working directory (`gunicorn wallet_site.wsgi` from the
top level). Request lines over gunicorn's default 4094 bytes answer 414, and every error
gunicorn answers itself is in the API's JSON error shape (wallet_site/gunicorn_errors.py)."""

import gc

from wallet_site import gunicorn_errors

gunicorn_errors.install()


# The collector by default looks at its youngest generation every 700 new container objects.
# A batch of 8,189 items makes hundreds of thousands (its items, results and answer), so it
# ran hundreds of times a batch, each pass walking what survived. In a worker, the objects
# of its start-up are frozen out of every pass and the youngest generation is collected every
# 50,000 (the older ones at the default multiples): 8-14% off a full batch's time in an A/B
# in one process, for a few MB more young garbage between passes.
GC_THRESHOLDS = (50_000, 10, 10)


def post_fork(server: object, worker: object) -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
