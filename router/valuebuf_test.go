package router

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/userrouter/userrouter/pagecache/pagecachetest"
)

// TestCacheLentBuffersConcurrentHits: memcached hits are read into pooled
// buffers their responses are sent from (see lendValues); under
// concurrent keep-alive clients every answer must still be its own
// page's, whole: a buffer given back before its response was written
// would show another page's bytes, and under -race (make test) the
// detector reports the read into it racing the response's write (checked
// by giving buffers back at once: DATA RACE).
func TestCacheLentBuffersConcurrentHits(t *testing.T) {
	s := newSite(t)
	base := cacheRouter(t, s, memcachedStore(t, pagecachetest.Memcached(t)), Options{}, nil)
	const pages = 12
	want := make([]string, pages)
	for i := range pages {
		// Pages of several sizes, some larger than a lent buffer.
		path := fmt.Sprintf("/lent/%d?pad=%s", i, strings.Repeat("x", i*700))
		a := fetch(t, "GET", base+path)
		if a.cacheStatus != "userrouter; fwd=miss; stored" {
			t.Fatalf("filling %d: %q", i, a.cacheStatus)
		}
		want[i] = a.body
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for n := range 150 {
				i := (g*7 + n) % pages
				resp, err := client.Get(base + fmt.Sprintf("/lent/%d?pad=%s", i, strings.Repeat("x", i*700)))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if cs := resp.Header.Get("Cache-Status"); cs != "userrouter; hit" || string(b) != want[i] {
					errs <- fmt.Errorf("page %d: %q, %d bytes; want a hit with its own %d bytes", i, cs, len(b), len(want[i]))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
