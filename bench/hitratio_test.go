package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestHitRatioDefinition holds the README, the Grafana dashboard and bench
// to one hit ratio: requests served from the cache, fresh or stale
// (userrouter's outcomes hit and stale, Cache-Status "hit"), over every
// request but purges; collapsed is not a hit.
func TestHitRatioDefinition(t *testing.T) {
	const num, den = `outcome=~"hit|stale"`, `outcome!="purge"`
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	formula := `sum(rate(userrouter_requests_total{` + num + `}[5m])) / sum(rate(userrouter_requests_total{` + den + `}[5m]))`
	if !strings.Contains(string(readme), formula) {
		t.Errorf("the README does not give the hit ratio as %s", formula)
	}

	raw, err := os.ReadFile("../contrib/grafana/userrouter-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range dash.Panels {
		if p.Title != "Hit ratio" {
			continue
		}
		found = true
		if len(p.Targets) != 1 {
			t.Fatalf("the dashboard's hit ratio has %d queries; want 1", len(p.Targets))
		}
		top, bottom, ok := strings.Cut(p.Targets[0].Expr, " / ")
		if !ok || !strings.Contains(top, num) || strings.Contains(top, "collapsed") || !strings.Contains(bottom, den) {
			t.Errorf("the dashboard's hit ratio is %s; want %s over %s", p.Targets[0].Expr, num, den)
		}
	}
	if !found {
		t.Error("the dashboard has no Hit ratio panel")
	}

	// bench counts as hits the Cache-Status values of the outcomes hit and
	// stale, and nothing else userrouter sends.
	for v, hit := range map[string]bool{
		"userrouter; hit":                               true,
		"userrouter; hit; detail=l1":                    true,
		"userrouter; hit; detail=stale":                 true,
		"userrouter; hit; detail=stale-if-error; ttl=3": true,
		"userrouter; fwd=miss; collapsed":               false,
		"userrouter; fwd=miss; stored":                  false,
		"userrouter; fwd=stale; fwd-status=304; stored": false,
		"userrouter; fwd=bypass; detail=identified":     false,
	} {
		if got := classifyCacheStatus(v).Hit; got != hit {
			t.Errorf("bench counts %q as a hit: %v; want %v", v, got, hit)
		}
	}
}
