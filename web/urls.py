from __future__ import annotations

from django.urls import path
from django.views.generic import RedirectView

from web.views import auth, calendar, dashboard, patient, worklist

app_name = "web"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="web:worklist", permanent=False), name="home"),
    path("login/", auth.ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth.StaffLogoutView.as_view(), name="logout"),
    path("team/", auth.team_switch, name="team-switch"),
    path("i18n/setlang/", auth.language_switch, name="set-language"),
    path("calendar/", calendar.calendar_view, name="calendar"),
    path("calendar/book/<uuid:item_id>/", calendar.book_view, name="book"),
    path("calendar/appointments/<uuid:appointment_id>/", calendar.appointment_view, name="appointment"),
    path("calendar/appointments/<uuid:appointment_id>/move/", calendar.appointment_move_view, name="appointment-move"),
    path(
        "calendar/appointments/<uuid:appointment_id>/cancel/",
        calendar.appointment_cancel_view,
        name="appointment-cancel",
    ),
    path("worklist/", worklist.worklist_view, name="worklist"),
    path("worklist/<uuid:item_id>/outcome/", worklist.outcome_view, name="outcome"),
    path("escalations/<uuid:escalation_id>/acknowledge/", worklist.acknowledge_view, name="acknowledge"),
    path("patients/", patient.patient_list, name="patients"),
    path("patients/<uuid:patient_id>/", patient.patient_view, name="patient"),
    path("patients/<uuid:patient_id>/doses/new/", patient.dose_new, name="dose-new"),
    path("patients/<uuid:patient_id>/doses/<uuid:dose_id>/void/", patient.dose_void, name="dose-void"),
    path("patients/<uuid:patient_id>/labs/new/", patient.lab_new, name="lab-new"),
    path("patients/<uuid:patient_id>/dental/new/", patient.dental_new, name="dental-new"),
    path("patients/<uuid:patient_id>/courses/new/", patient.course_new, name="course-new"),
    path("patients/<uuid:patient_id>/courses/<uuid:course_id>/stop/", patient.course_stop, name="course-stop"),
    path("dashboard/", dashboard.dashboard_view, name="dashboard"),
]
