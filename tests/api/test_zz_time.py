import cProfile, pstats, time
from tests.api.conftest import *  # noqa

def test_t(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from tests.api import conftest
    pr = cProfile.Profile(); pr.enable()
    t=time.time()
    conftest.world.__pytest_wrapped__.obj(db)
    print("world", time.time()-t)
    pr.disable(); pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
