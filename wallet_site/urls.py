from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from backoffice.prometheus import metrics_view
from backoffice.site import favicon
from staff.views import enrol_view, verify_view

handler403 = "backoffice.site.permission_denied"

urlpatterns = [
    # Before the admin's own URLs: its catch-all would answer these paths.
    path("admin/two-factor/enrol/", enrol_view, name="two-factor-enrol"),
    path("admin/two-factor/verify/", verify_view, name="two-factor-verify"),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("favicon.ico", favicon, name="favicon"),
    path("api/", include("api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/schema/ui/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
