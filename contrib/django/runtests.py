#!/usr/bin/python3
"""Run userrouter_purge's tests with Django's test runner.

    /usr/bin/python3 contrib/django/runtests.py [-v 0|1|2|3] [-k PATTERN] [test labels...]

Uses the Django installed for this Python (Debian's python3-django 3.2 is
the reference) and the blog app of testproject/. Exits non-zero when a
test fails. No services are needed: the purge API is played by a real
HTTP server on 127.0.0.1 inside the test process.
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("labels", nargs="*", default=["tests"], help="test labels (default: tests)")
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    parser.add_argument("-k", dest="patterns", action="append", help="only tests matching this pattern")
    parser.add_argument("--failfast", action="store_true")
    args = parser.parse_args()

    sys.path[:0] = [HERE, os.path.join(HERE, "testproject")]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings
    from django.test.utils import get_runner

    django.setup()
    kwargs = {"verbosity": args.verbosity, "failfast": args.failfast}
    if args.patterns:
        kwargs["test_name_patterns"] = args.patterns
    runner = get_runner(settings)(**kwargs)
    failures = runner.run_tests(args.labels)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
