"""Read Cookie headers as Django does, for TestKeyFinderAgreesWithDjango.

stdin: {"name": cookie name, "headers": [base64 of each header's bytes]}.
stdout: one {"last": ..., "all": [...]} per header: the value Django's
request.COOKIES holds for the name (null when none), and the value of every
chunk of that name in order (each chunk read by parse_cookie on its own),
for the first-wins and doubt readings.
"""
import base64
import json
import sys

from django.http.cookie import parse_cookie


def wsgi_str(raw):
    # The server hands the header over as latin-1 (PEP 3333); Django's
    # get_str_from_wsgi re-encodes it and decodes UTF-8, replacing errors.
    return raw.decode('latin-1').encode('iso-8859-1').decode(errors='replace')


def main():
    req = json.load(sys.stdin)
    name = req['name']
    out = []
    for h in req['headers']:
        s = wsgi_str(base64.b64decode(h))
        chunks = [parse_cookie(c) for c in s.split(';')]
        out.append({
            'last': parse_cookie(s).get(name),
            'all': [c[name] for c in chunks if name in c],
        })
    json.dump(out, sys.stdout)


main()
