package load

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat on Linux.
const userHZ = 100

// watch follows the CPU time and resident memory of some processes, and
// the CPU time of the generator itself.
type watch struct {
	pids      []int
	cpuStart  time.Duration
	selfStart time.Duration
	stop      chan struct{}
	done      chan struct{}
	mu        sync.Mutex
	rssMax    int64
	err       error
}

// startWatch reads the CPU times now and samples the memory of pids until
// finish is called.
func startWatch(pids []int) (*watch, error) {
	w := &watch{pids: pids, stop: make(chan struct{}), done: make(chan struct{})}
	self, err := procCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	cpu, err := w.cpu()
	if err != nil {
		return nil, err
	}
	w.selfStart, w.cpuStart = self, cpu
	go w.sample(200 * time.Millisecond)
	return w, nil
}

func (w *watch) sample(every time.Duration) {
	defer close(w.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		w.sampleRSS()
		select {
		case <-t.C:
		case <-w.stop:
			return
		}
	}
}

func (w *watch) sampleRSS() {
	var sum int64
	for _, pid := range w.pids {
		rss, err := procRSS(pid)
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		sum += rss
	}
	w.mu.Lock()
	w.rssMax = max(w.rssMax, sum)
	w.mu.Unlock()
}

// finish stops sampling and returns what the processes used since start
// (nil without pids) and the generator's own CPU time.
func (w *watch) finish() (*Usage, time.Duration, error) {
	cpu, err := w.cpu()
	self, serr := procCPU(os.Getpid())
	w.sampleRSS()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if err = errors.Join(err, serr, w.err); err != nil {
		return nil, 0, err
	}
	if len(w.pids) == 0 {
		return nil, self - w.selfStart, nil
	}
	u := &Usage{PIDs: w.pids, CPU: cpu - w.cpuStart, RSSMax: w.rssMax}
	return u, self - w.selfStart, nil
}

func (w *watch) cpu() (time.Duration, error) {
	var sum time.Duration
	for _, pid := range w.pids {
		d, err := procCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// procCPU returns the user plus system time pid has used, all its threads
// together.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	// The command name may hold spaces; fields are counted after its ')'.
	fields := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("cpu time of pid %d: short /proc stat line", pid)
	}
	utime, err1 := strconv.ParseInt(string(fields[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(fields[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu time of pid %d: unreadable /proc stat line", pid)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// procRSS returns VmRSS of pid in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if f := bytes.Fields(rest); ok && len(f) == 2 && string(f[1]) == "kB" {
			kb, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err == nil {
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("memory of pid %d: no VmRSS in /proc status", pid)
}
