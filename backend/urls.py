from __future__ import annotations

from django.contrib import admin
from django.urls import path

admin.site.site_header = "Carnet"
admin.site.site_title = "Carnet"
admin.site.index_title = "Booklets, plans and reminders"

urlpatterns = [
    path("admin/", admin.site.urls),
]
