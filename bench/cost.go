package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// A runCost is what a run cost bench itself, and, with -pid, the target.
// It covers the whole run, warm-up included: CPU time cannot be read per
// request, only per process.
type runCost struct {
	cpu      time.Duration // bench's CPU time, user and system
	wall     time.Duration // from the first request to the last answer
	requests uint64        // requests finished, warm-up included
	numCPU   int           // the machine's CPUs
	loopback bool          // every endpoint is on this machine
	target   *targetUsage  // nil without -pid
}

// targetUsage is what -pid's process used during the run.
type targetUsage struct {
	pid     int
	peakRSS int64         // bytes, the highest VmRSS sampled
	endRSS  int64         // bytes, VmRSS when the run ended
	cpu     time.Duration // CPU time used during the run
	err     string        // why the figures are missing or partial, or ""
}

// rssInterval is how often -pid's resident memory is sampled.
const rssInterval = 100 * time.Millisecond

// selfCPU returns the CPU time bench has used so far, user and system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// errNoProc says that /proc/PID cannot be read.
var errNoProc = errors.New("no such process, or /proc cannot be read")

// readRSS returns the resident set size of process pid, from the VmRSS
// line of /proc/PID/status.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, errNoProc
	}
	return parseVmRSS(b)
}

// parseVmRSS reads the VmRSS line ("VmRSS:	  123456 kB") of a
// /proc/PID/status file.
func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		v, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(v)
		if len(f) != 2 || string(f[1]) != "kB" {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64>>10 {
			break
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line in /proc/PID/status (a kernel thread?)")
}

// procReadable reports whether process pid's RSS can be read.
func procReadable(pid int) bool {
	_, err := readRSS(pid)
	return err == nil
}

// clockTicks is Linux's USER_HZ, the unit of /proc/PID/stat's CPU times:
// 100 on every architecture Go supports.
const clockTicks = 100

// readProcCPU returns the CPU time process pid has used, user and system,
// from /proc/PID/stat.
func readProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, errNoProc
	}
	return parseProcStat(b)
}

// parseProcStat reads utime and stime, the 14th and 15th fields of a
// /proc/PID/stat line; the command name, the 2nd, is in parentheses and
// may hold spaces and parentheses itself.
func parseProcStat(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	f := bytes.Fields(stat[i+1:]) // from the 3rd field on
	if len(f) < 13 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	// Two tick counts whose sum, as a Duration, cannot overflow.
	const maxTicks = math.MaxInt64 / 2 / int64(time.Second/clockTicks)
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil || n < 0 || n > maxTicks {
			return 0, errors.New("malformed /proc/PID/stat")
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / clockTicks), nil
}

// A procWatch samples -pid's resident memory during a run.
type procWatch struct {
	u     targetUsage
	cpu0  time.Duration
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex // guards u while the sampler runs
	cpuOK bool
}

// watchProc starts sampling process pid; finish stops it.
func watchProc(pid int) *procWatch {
	p := &procWatch{u: targetUsage{pid: pid}, stop: make(chan struct{})}
	var err error
	p.cpu0, err = readProcCPU(pid)
	p.cpuOK = err == nil
	p.sample()
	p.wg.Go(func() {
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.sample()
			}
		}
	})
	return p
}

// sample reads the process's RSS once.
func (p *procWatch) sample() {
	rss, err := readRSS(p.u.pid)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.u.err == "" {
			p.u.err = err.Error()
		}
		return
	}
	p.u.peakRSS = max(p.u.peakRSS, rss)
	p.u.endRSS = rss
}

// finish stops the sampler and returns what the process used.
func (p *procWatch) finish() *targetUsage {
	close(p.stop)
	p.wg.Wait()
	p.sample()
	if cpu, err := readProcCPU(p.u.pid); err == nil && p.cpuOK {
		p.u.cpu = cpu - p.cpu0
	} else if p.u.err == "" {
		p.u.err = errNoProc.Error()
	}
	u := p.u
	return &u
}

// allLoopback reports whether every endpoint is on this machine.
func allLoopback(urls []string) bool {
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return false
		}
		h := u.Hostname()
		if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

// newRunCost returns the cost of a run that used cpu over wall for
// requests, on the URLs of spec.
func newRunCost(spec *runSpec, cpu, wall time.Duration, requests uint64) runCost {
	return runCost{cpu: cpu, wall: wall, requests: requests, numCPU: runtime.NumCPU(), loopback: allLoopback(spec.urls)}
}

// perRequest is bench's CPU time per request, 0 when unknown.
func (c *runCost) perRequest() time.Duration {
	if c.requests == 0 {
		return 0
	}
	return c.cpu / time.Duration(c.requests)
}

// cores is how many cores bench kept busy on average.
func (c *runCost) cores() float64 {
	if c.wall <= 0 {
		return 0
	}
	return c.cpu.Seconds() / c.wall.Seconds()
}

// targetCores is how many cores -pid's process kept busy, 0 without -pid.
func (c *runCost) targetCores() float64 {
	if c.target == nil || c.wall <= 0 {
		return 0
	}
	return c.target.cpu.Seconds() / c.wall.Seconds()
}

// heavy says, when bench used more than half the cores the target needed
// (and could therefore have taken cores from it), why: with -pid,
// compared with what the target used; without it, for a target on this
// machine, with the most it could have had, the cores bench left. It
// returns "" when bench was light enough, or when the target is elsewhere
// and unmeasured.
func (c *runCost) heavy() string {
	b := c.cores()
	switch {
	case c.wall < 100*time.Millisecond || c.requests == 0:
		return ""
	case c.target != nil && c.target.cpu > 0:
		if t := c.targetCores(); b > t/2 {
			return fmt.Sprintf("bench used %.2f cores, more than half the %.2f the target (pid %d) used: on a shared machine bench may be what limits the figures; run it on another machine to measure the target alone", b, t, c.target.pid)
		}
	case c.loopback:
		if left := float64(c.numCPU) - b; b > left/2 {
			return fmt.Sprintf("bench used %.2f of the %d cores, more than half the %.2f it left to a target on this machine: bench may be what limits the figures; run it on another machine, or give -pid to compare with what the target used", b, c.numCPU, left)
		}
	}
	return ""
}

// costJSON is bench's own cost in the JSON report.
type costJSON struct {
	CPUPerRequestUs float64 `json:"cpu_per_request_us"` // bench's CPU time per request, warm-up included
	Cores           float64 `json:"cores"`              // cores bench kept busy on average
	ShareOfCores    float64 `json:"share_of_cores"`     // cores over the machine's
	NumCPU          int     `json:"num_cpu"`
}

// targetJSON is -pid's process in the JSON report.
type targetJSON struct {
	PID             int     `json:"pid"`
	RSSPeakBytes    int64   `json:"rss_peak_bytes"`
	RSSEndBytes     int64   `json:"rss_end_bytes"`
	Cores           float64 `json:"cores"`              // cores the process kept busy on average
	CPUPerRequestUs float64 `json:"cpu_per_request_us"` // its CPU time per request bench sent
	Error           string  `json:"error,omitempty"`
}

func (c *runCost) toJSON() costJSON {
	j := costJSON{CPUPerRequestUs: micros(c.perRequest()), Cores: c.cores(), NumCPU: c.numCPU}
	if c.numCPU > 0 {
		j.ShareOfCores = j.Cores / float64(c.numCPU)
	}
	return j
}

func (c *runCost) targetJSON() *targetJSON {
	t := c.target
	if t == nil {
		return nil
	}
	j := &targetJSON{PID: t.pid, RSSPeakBytes: t.peakRSS, RSSEndBytes: t.endRSS, Cores: c.targetCores(), Error: t.err}
	if c.requests > 0 {
		j.CPUPerRequestUs = micros(t.cpu / time.Duration(c.requests))
	}
	return j
}

// micros is d in microseconds.
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// describe says what bench cost, in one line.
func (c *runCost) describe() string {
	if c.requests == 0 || c.wall <= 0 || c.numCPU == 0 {
		return "–"
	}
	share := 0.0
	if c.numCPU > 0 {
		share = c.cores() / float64(c.numCPU)
	}
	return fmt.Sprintf("%.1fµs CPU per request; %.2f of %d cores (%.0f%%)", micros(c.perRequest()), c.cores(), c.numCPU, 100*share)
}

// fmtPerRequest formats bench's CPU time per request: "23.5µs", or
// noFigure when no request finished.
func (c *runCost) fmtPerRequest() string {
	if c.requests == 0 {
		return noFigure
	}
	return fmt.Sprintf("%.1fµs", micros(c.perRequest()))
}

// describeTarget says what -pid's process used, in one line, or "".
func (c *runCost) describeTarget() string {
	t := c.target
	if t == nil {
		return ""
	}
	if t.peakRSS == 0 && t.err != "" {
		return fmt.Sprintf("pid %d: %s", t.pid, t.err)
	}
	s := fmt.Sprintf("pid %d: RSS peak %s, at end %s", t.pid, fmtBytes(t.peakRSS), fmtBytes(t.endRSS))
	if t.cpu > 0 && c.requests > 0 {
		s += fmt.Sprintf("; %.2f cores, %.1fµs CPU per request", c.targetCores(), micros(t.cpu/time.Duration(c.requests)))
	}
	if t.err != "" {
		s += " (" + t.err + ")"
	}
	return s
}

// fmtBytes formats n bytes in MiB.
func fmtBytes(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
