from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from notifications.views import health_outbox
from scheduling.feeds import ical_feed

admin.site.site_header = "Carnet"
admin.site.site_title = "Carnet"
admin.site.index_title = "Booklets, plans and reminders"

urlpatterns = [
    # Every REST route (backend/api_urls.py), first: the app polls two of them (backend/polled.py).
    path("api/v1/", include("backend.api_urls")),
    path("admin/", admin.site.urls),
    path("health/outbox", health_outbox, name="health-outbox"),
    path("ical/<str:token>.ics", ical_feed, name="ical-feed"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    # The nurses' pages (login, calendar, worklist, patient booklet, dashboard) and the language switch.
    path("", include("web.urls")),
]
