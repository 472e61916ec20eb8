//go:build !race

package router

import (
	"testing"

	"github.com/userrouter/userrouter/pagecache"
)

// TestCredentialHitAllocs guards the credential hit path: a verified
// token (its verdict cached) served the shared copy or its own allocates
// nothing in userrouter.
func TestCredentialHitAllocs(t *testing.T) {
	for _, mode := range []pagecache.Credentials{pagecache.CredentialsShared, pagecache.CredentialsPerCredential} {
		r, ctx, want := credentialHitRouter(t, mode)
		if n := testing.AllocsPerRun(500, func() { serveCredentialHit(t, r, ctx, want) }); n != 0 {
			t.Errorf("%v: %v allocations per hit; want 0", mode, n)
		}
	}
}
