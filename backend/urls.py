from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from notifications.views import health_outbox
from scheduling.api import PlanPreviewView
from scheduling.feeds import ical_feed

admin.site.site_header = "Carnet"
admin.site.site_title = "Carnet"
admin.site.index_title = "Booklets, plans and reminders"

api_v1 = [
    path("plan/preview", PlanPreviewView.as_view(), name="plan-preview"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/outbox", health_outbox, name="health-outbox"),
    path("ical/<str:token>.ics", ical_feed, name="ical-feed"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    *[path(f"api/v1/{p.pattern}", p.callback, name=p.name) for p in api_v1],
    # The nurses' pages (login, calendar, worklist, patient booklet, dashboard) and the language switch.
    path("", include("web.urls")),
]
