#!/usr/bin/env python3
"""Writes userrouter-dashboard.json, the Grafana dashboard for userrouter's
metrics. Run it from anywhere after changing a panel:

    python3 contrib/grafana/make_dashboard.py
"""
import os
import json

def sel(extra=""):
    inner = 'job=~"$job", instance=~"$instance"'
    return "{" + inner + (", " + extra if extra else "") + "}"

R = "$__rate_interval"
ALL = sel()
NOPURGE = sel('outcome!="purge"')
# The hit ratio as the README defines it: hit|stale over every request but
# purges; collapsed requests waited for another's fill and are not hits.
SERVED = sel('outcome=~"hit|stale"')
FROMCACHE = sel('source="cache"')
DS = {"type": "prometheus", "uid": "${datasource}"}

def ts(title, exprs, unit="short", w=12, h=8, desc=""):
    return {"type": "timeseries", "title": title, "description": desc, "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
            "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10}}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi"}},
            "targets": [{"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(65 + i)} for i, (e, l) in enumerate(exprs)]}

def stat(title, expr, unit="percentunit", w=6, desc=""):
    return {"type": "stat", "title": title, "description": desc, "datasource": DS,
            "gridPos": {"h": 4, "w": w, "x": 0, "y": 0},
            "fieldConfig": {"defaults": {"unit": unit, "decimals": 1}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value", "graphMode": "area"},
            "targets": [{"datasource": DS, "expr": expr, "refId": "A"}]}

def row(title):
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}, "panels": []}

def rate(metric, s=ALL, by=None):
    agg = "sum by (%s) " % by if by else "sum"
    return "%s(rate(%s%s[%s]))" % (agg, metric, s, R)

def quantile(q, metric, by="le"):
    return "histogram_quantile(%s, sum by (%s) (rate(%s_bucket%s[%s])))" % (q, by, metric, ALL, R)

L = []
L.append(row("Overview"))
L.append(stat("Hit ratio", "%s / %s" % (rate("userrouter_requests_total", SERVED), rate("userrouter_requests_total", NOPURGE)),
              desc="Requests served from the cache, fresh or stale, among all requests but purges (the README's definition, which bench uses too; a request collapsed onto another's fill is not a hit)."))
L.append(stat("Backend offload", "1 - %s / %s" % (rate("userrouter_backend_responses_total"), rate("userrouter_requests_total", NOPURGE)),
              desc="Share of requests that never reached the application."))
L.append(stat("Bytes from cache", "%s / %s" % (rate("userrouter_response_bytes_total", FROMCACHE), rate("userrouter_response_bytes_total")),
              desc="Body bytes served from the cache among all body bytes: the capacity the cache saves."))
L.append(stat("Requests/s", rate("userrouter_requests_total"), unit="reqps"))
L.append(ts("Requests by outcome", [(rate("userrouter_requests_total", by="outcome"), "{{outcome}}")], unit="reqps"))
L.append(ts("p99 latency by outcome", [(quantile("0.99", "userrouter_request_duration_seconds", "le, outcome"), "{{outcome}}")], unit="s",
            desc="Time userrouter spent on a request, from its arrival to its answer's head."))
L.append(row("Cache"))
L.append(ts("Fills: stored, or why not", [(rate("userrouter_cache_stored_total"), "stored"), (rate("userrouter_cache_not_stored_total", by="reason"), "{{reason}}")], unit="ops"))
L.append(ts("Bypass, by reason", [(rate("userrouter_bypass_total", by="reason"), "{{reason}}")], unit="reqps"))
L.append(ts("memcached", [(rate("userrouter_memcached_operations_total"), "operations"), (rate("userrouter_memcached_errors_total"), "errors"),
                          (rate("userrouter_memcached_timeouts_total"), "timeouts"), (rate("userrouter_memcached_busy_total"), "no free slot")], unit="ops"))
L.append(ts("memcached latency", [(quantile("0.5", "userrouter_memcached_operation_duration_seconds"), "p50"),
                                  (quantile("0.99", "userrouter_memcached_operation_duration_seconds"), "p99")], unit="s"))
L.append(ts("Purges", [(rate("userrouter_purges_total", by="kind"), "{{kind}}"), (rate("userrouter_purges_refused_total"), "refused")], unit="ops"))
L.append(ts("Background fills", [(rate("userrouter_background_fills_total"), "started"), (rate("userrouter_background_fills_skipped_total"), "skipped: too many running")], unit="ops"))
L.append(row("Sessions"))
L.append(ts("Session lookups", [(rate("userrouter_session_lookups_total"), "lookups"), (rate("userrouter_session_cache_hits_total"), "verdict cache hits"),
                                (rate("userrouter_session_queries_total"), "queries to the database")], unit="ops"))
L.append(ts("Verdicts and doubts", [(rate("userrouter_session_verdicts_total", by="verdict"), "{{verdict}}"),
                                    (rate("userrouter_session_doubts_total", by="reason"), "doubt: {{reason}}")], unit="ops"))
L.append(ts("Session database latency", [(quantile("0.5", "userrouter_session_query_duration_seconds"), "p50"),
                                         (quantile("0.99", "userrouter_session_query_duration_seconds"), "p99")], unit="s"))
L.append(ts("Circuit breaker", [("max by (instance) (userrouter_session_breaker_open%s)" % ALL, "open: {{instance}}"),
                                (rate("userrouter_session_breaker_opens_total"), "openings/s")],
            desc="1 while the session store is not asked: every visitor with a session is forwarded."))
L.append(row("Backends and process"))
L.append(ts("Backend responses", [(rate("userrouter_backend_responses_total", by="class"), "{{class}}"), (rate("userrouter_backend_errors_total"), "no answer (502/503/504)")], unit="reqps"))
L.append(ts("Backend latency", [(quantile("0.5", "userrouter_backend_duration_seconds"), "p50"), (quantile("0.99", "userrouter_backend_duration_seconds"), "p99")], unit="s"))
L.append(ts("In flight", [("sum by (instance) (userrouter_in_flight_requests%s)" % ALL, "{{instance}}")]))
L.append(ts("Access log drops, reloads", [(rate("userrouter_access_log_dropped_total"), "access lines dropped/s"),
                                          ("sum by (result) (increase(userrouter_reloads_total%s[%s]))" % (ALL, R), "reloads: {{result}}")]))

y = 0; x = 0; rowh = 0
for i, p in enumerate(L, 1):
    p["id"] = i
    g = p["gridPos"]
    if p["type"] == "row":
        if x:
            y += rowh; x = 0; rowh = 0
        g["y"] = y; y += 1
        continue
    if x + g["w"] > 24:
        y += rowh; x = 0; rowh = 0
    g["x"], g["y"] = x, y
    x += g["w"]; rowh = max(rowh, g["h"])

dash = {"title": "userrouter", "uid": "userrouter", "tags": ["userrouter"], "timezone": "browser", "schemaVersion": 39, "version": 1,
        "refresh": "30s", "time": {"from": "now-3h", "to": "now"},
        "description": "userrouter: hit ratio, backend offload, latency by outcome, memcached and session database health (the admin listener's /metrics).",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "job", "type": "query", "datasource": DS, "query": "label_values(userrouter_build_info, job)", "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}, "refresh": 2},
            {"name": "instance", "type": "query", "datasource": DS, "query": 'label_values(userrouter_build_info{job=~"$job"}, instance)', "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}, "refresh": 2},
        ]},
        "panels": L}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "userrouter-dashboard.json"), "w") as f:
    json.dump(dash, f, indent=1)
    f.write("\n")
print(len(L), "panels")
