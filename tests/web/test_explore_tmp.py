from scheduling.models import PlanItem
def test_explore(clinic, nurse_client):
    for p in (clinic.late, clinic.slightly_late, clinic.blocked):
        print(p)
        for i in PlanItem.objects.filter(patient=p, closed_at__isnull=True):
            print("  ", i.kind, i.due, i.window_start, i.window_end, i.status, i.level, i.days_late, i.blocked_by, i.rule)
    for url in ["/worklist/", "/calendar/", "/calendar/?view=day", "/calendar/?view=month", f"/patients/{clinic.late.public_id}/", "/dashboard/", "/patients/"]:
        r = nurse_client.get(url)
        print(url, r.status_code, len(r.content))
        assert r.status_code == 200, r.content[:3000]
