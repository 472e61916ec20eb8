package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// isTerminal reports whether w is a terminal, where a live progress line
// makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showProgress rewrites one status line on w each second until done is
// closed, then clears it. It reads the workers' live counters only.
func showProgress(w io.Writer, s *schedule, workers []*worker, done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prev uint64
	prevAt := time.Now()
	for {
		select {
		case <-done:
			fmt.Fprint(w, "\r\033[K")
			return
		case now := <-tick.C:
			var n, errs uint64
			for _, wk := range workers {
				n += wk.rec.live.done.Load()
				errs += wk.rec.live.errs.Load()
			}
			rps := float64(n-prev) / now.Sub(prevAt).Seconds()
			prev, prevAt = n, now
			phase := "warm-up"
			if !now.Before(s.measureStart) {
				phase = fmt.Sprintf("%.0fs measured", now.Sub(s.measureStart).Seconds())
			}
			fmt.Fprintf(w, "\r\033[K%s  %d requests  %.0f req/s  %d errors", phase, n, rps, errs)
		}
	}
}
