#!/usr/bin/env python3
"""The API test project's manage.py. Run it with Debian's /usr/bin/python3."""
import os
import sys

if __name__ == "__main__":
    sys.dont_write_bytecode = True
    here = os.path.dirname(os.path.abspath(__file__))
    # userrouter_purge lives one directory up, in contrib/django.
    sys.path[1:1] = [os.path.dirname(here)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
