"""Every ``/api/v1/`` route. Objects are named by their public UUID, never by a sequential id.

``tests/api/test_permissions.py`` walks these patterns, so a new route cannot escape the
permission matrix.
"""

from __future__ import annotations

from django.urls import path

from backend import auth_api as auth
from notifications import api as notifications_api
from patients import api as patients_api
from scheduling import api as scheduling_api

urlpatterns = [
    # The app's polled reads first: each request tries the patterns in order (backend/polled.py).
    path("me/booklet", patients_api.MeBookletView.as_view(), name="api-me-booklet"),
    path("me/plan", scheduling_api.MePlanView.as_view(), name="api-me-plan"),
    # Authentication: JWT for the app, the session for staff pages.
    path("auth/token", auth.TokenObtainView.as_view(), name="api-token"),
    path("auth/token/refresh", auth.TokenRefreshView.as_view(), name="api-token-refresh"),
    path("auth/logout", auth.LogoutView.as_view(), name="api-logout"),
    path("auth/sign-out-everywhere", auth.SignOutEverywhereView.as_view(), name="api-sign-out-everywhere"),
    path("auth/whoami", auth.WhoAmIView.as_view(), name="api-whoami"),
    path("auth/session/csrf", auth.SessionCsrfView.as_view(), name="api-session-csrf"),
    path("auth/session/login", auth.SessionLoginView.as_view(), name="api-session-login"),
    path("auth/session/logout", auth.SessionLogoutView.as_view(), name="api-session-logout"),
    # The patient's own data.
    path("me", patients_api.MeView.as_view(), name="api-me"),
    path("me/vitamin-d-doses", patients_api.MeVitaminDView.as_view(), name="api-me-vitamin-d"),
    path("me/devices", notifications_api.MeDevicesView.as_view(), name="api-me-devices"),
    path("me/devices/<str:id>", notifications_api.MeDeviceView.as_view(), name="api-me-device"),
    path("me/calendar-feed", scheduling_api.MeCalendarFeedView.as_view(), name="api-me-calendar-feed"),
    path(
        "me/calendar-feed/rotate", scheduling_api.MeCalendarFeedRotateView.as_view(), name="api-me-calendar-feed-rotate"
    ),
    path("me/export", patients_api.MeExportView.as_view(), name="api-me-export"),
    # Staff: patients of their care teams and their booklets.
    path("care-teams", patients_api.CareTeamListView.as_view(), name="api-care-teams"),
    path("patients", patients_api.PatientListView.as_view(), name="api-patients"),
    path("patients/<str:id>", patients_api.PatientDetailView.as_view(), name="api-patient"),
    path("patients/<str:id>/booklet", patients_api.PatientBookletView.as_view(), name="api-patient-booklet"),
    path("patients/<str:id>/plan", scheduling_api.PatientPlanView.as_view(), name="api-patient-plan"),
    path("patients/<str:id>/courses", patients_api.PatientCoursesView.as_view(), name="api-patient-courses"),
    path("patients/<str:id>/doses", patients_api.PatientDosesView.as_view(), name="api-patient-doses"),
    path("patients/<str:id>/labs", patients_api.PatientLabsView.as_view(), name="api-patient-labs"),
    path(
        "patients/<str:id>/dental-events",
        patients_api.PatientDentalEventsView.as_view(),
        name="api-patient-dental-events",
    ),
    path(
        "patients/<str:id>/comedications",
        patients_api.PatientComedicationsView.as_view(),
        name="api-patient-comedications",
    ),
    path("courses/<str:id>/stop", patients_api.CourseStopView.as_view(), name="api-course-stop"),
    path("courses/<str:id>/void", patients_api.CourseVoidView.as_view(), name="api-course-void"),
    path("doses/<str:id>/void", patients_api.DoseVoidView.as_view(), name="api-dose-void"),
    path("labs/<str:id>/void", patients_api.LabVoidView.as_view(), name="api-lab-void"),
    path("dental-events/<str:id>/void", patients_api.DentalEventVoidView.as_view(), name="api-dental-event-void"),
    path("comedications/<str:id>/void", patients_api.ComedicationVoidView.as_view(), name="api-comedication-void"),
    # Staff: calendar, worklist, escalations, plan preview.
    path("appointments", scheduling_api.AppointmentListView.as_view(), name="api-appointments"),
    path("appointments/<str:id>", scheduling_api.AppointmentDetailView.as_view(), name="api-appointment"),
    path("appointments/<str:id>/move", scheduling_api.AppointmentMoveView.as_view(), name="api-appointment-move"),
    path("appointments/<str:id>/cancel", scheduling_api.AppointmentCancelView.as_view(), name="api-appointment-cancel"),
    path("worklist", scheduling_api.WorklistView.as_view(), name="api-worklist"),
    path("escalations", scheduling_api.EscalationListView.as_view(), name="api-escalations"),
    path(
        "escalations/<str:id>/acknowledge",
        scheduling_api.EscalationAcknowledgeView.as_view(),
        name="api-escalation-acknowledge",
    ),
    path("escalations/<str:id>/resolve", scheduling_api.EscalationResolveView.as_view(), name="api-escalation-resolve"),
    path("plan/preview", scheduling_api.PlanPreviewView.as_view(), name="plan-preview"),
]
