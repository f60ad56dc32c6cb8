"""Strings other apps show on the nurse pages, listed so ``makemessages`` puts them in this app's
French catalogue: the choice labels of the models (protocols, products, statuses…) and the messages
of the services and of ``clean()`` that reach a form. Django merges every app's catalogue, so a
label translated here is French wherever the nurse pages display it. Nothing imports this module.
"""

from __future__ import annotations

from django.utils.translation import gettext_noop

LABELS = (
    # Protocol
    gettext_noop("Denosumab 60 mg every 6 months (osteoporosis)"),
    gettext_noop("Denosumab 120 mg every 4 weeks (bone metastases)"),
    gettext_noop("Zoledronic acid 4 mg (bone metastases)"),
    gettext_noop("Zoledronic acid 5 mg (consolidation)"),
    gettext_noop("Alendronate 70 mg weekly (consolidation)"),
    gettext_noop("Cholecalciferol 50,000 IU"),
    # Product
    gettext_noop("Denosumab"),
    gettext_noop("Zoledronic acid"),
    gettext_noop("Alendronate"),
    gettext_noop("Cholecalciferol (vitamin D3)"),
    # InjectionSite
    gettext_noop("Abdomen"),
    gettext_noop("Left thigh"),
    gettext_noop("Right thigh"),
    gettext_noop("Left upper arm"),
    gettext_noop("Right upper arm"),
    gettext_noop("Left arm (IV)"),
    gettext_noop("Right arm (IV)"),
    # Sex
    gettext_noop("Female"),
    gettext_noop("Male"),
    # LabResult.Test
    gettext_noop("Total calcium"),
    gettext_noop("Albumin"),
    gettext_noop("Ionised calcium"),
    gettext_noop("25-OH vitamin D"),
    gettext_noop("Creatinine"),
    gettext_noop("eGFR (CKD-EPI)"),
    gettext_noop("Creatinine clearance"),
    gettext_noop("CTX"),
    gettext_noop("Phosphate"),
    gettext_noop("Magnesium"),
    gettext_noop("Intact PTH"),
    # DentalEvent.Event
    gettext_noop("Dental examination"),
    gettext_noop("Panoramic X-ray (orthopantomogram)"),
    gettext_noop("Extraction"),
    gettext_noop("Dentist's clearance"),
    gettext_noop("Exposed bone identified"),
    gettext_noop("ONJ treatment started"),
    gettext_noop("Exposed bone still present"),
    # TreatmentCourse.Response
    gettext_noop("Complete oncological response"),
    gettext_noop("Good oncological response"),
    gettext_noop("Oligometastatic disease"),
    gettext_noop("Partial response"),
    gettext_noop("Stable disease"),
    gettext_noop("Progression"),
    # Route
    gettext_noop("Subcutaneous"),
    gettext_noop("Intravenous"),
    gettext_noop("Oral"),
    # ItemKind
    gettext_noop("Injection"),
    gettext_noop("Consolidation"),
    gettext_noop("Calcium check"),
    gettext_noop("Vitamin D dose"),
    gettext_noop("Vitamin D test"),
    gettext_noop("CTX check"),
    gettext_noop("Dental visit"),
    gettext_noop("Re-evaluation"),
    # ItemStatus
    gettext_noop("Scheduled"),
    gettext_noop("Reminder"),
    gettext_noop("Window open"),
    gettext_noop("Due"),
    gettext_noop("Overdue (L1)"),
    gettext_noop("Overdue (L2)"),
    gettext_noop("Overdue (L3)"),
    gettext_noop("Overdue (L4)"),
    gettext_noop("Done"),
    gettext_noop("Missed"),
    gettext_noop("Cancelled"),
    gettext_noop("Blocked"),
    # Appointment.Status
    gettext_noop("Booked"),
    gettext_noop("Cancelled"),
    gettext_noop("Done"),
    # OutboxState
    gettext_noop("Pending"),
    gettext_noop("Sending (claimed)"),
    gettext_noop("Sent"),
    gettext_noop("Cancelled"),
    gettext_noop("Dead (gave up)"),
    gettext_noop("Folded into a digest"),
)

MESSAGES = (
    # patients.models clean() and patients.services
    gettext_noop("A dose cannot be dated in the future."),
    gettext_noop("The lot number is required for an injection given by staff."),
    gettext_noop("The injection site is required for an injection given by staff."),
    gettext_noop("An injection belongs to a treatment course."),
    gettext_noop("This course belongs to another patient."),
    gettext_noop("This course was voided."),
    gettext_noop("This dose is already recorded for that day."),
    gettext_noop("A lab result cannot be dated in the future."),
    gettext_noop("Albumin from the same draw corrects total calcium only."),
    gettext_noop("Give both limits of the lab's range, or neither."),
    gettext_noop("The upper limit must be above the lower limit."),
    gettext_noop("A dental event cannot be dated in the future."),
    gettext_noop("A course cannot stop before it starts."),
    gettext_noop("Give the reason for stopping."),
    gettext_noop("The stop date cannot be in the future."),
    gettext_noop("Consolidation applies to denosumab 60 mg only."),
    gettext_noop("A response changes the interval of zoledronic acid 4 mg only."),
    gettext_noop("Give the reason for voiding this entry."),
    gettext_noop("This entry is already voided."),
    gettext_noop("This course is already stopped."),
    gettext_noop("Void this course's doses first."),
    gettext_noop("The appointment must end after it starts."),
    gettext_noop("An appointment lasts at most 12 hours."),
    gettext_noop("This item already has a booked appointment; move it instead."),
    gettext_noop("Say why the appointment is cancelled."),
    gettext_noop("This appointment is done; it cannot be cancelled."),
    gettext_noop("This escalation is already resolved."),
)
