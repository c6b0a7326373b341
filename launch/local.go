package launch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ListenPrefix starts the line a worker prints once it listens.
const ListenPrefix = "TORUS-LISTEN "

// Peers is what the launcher sends every worker: every rank's address.
type Peers struct {
	Addrs []string `json:"addrs"`
}

// LocalConfig is a job of Workers processes on this machine.
type LocalConfig struct {
	Workers int
	// Ranks, if set, are the global ranks of the Workers processes (one node
	// of a job that spans machines); default 0 ... Workers-1.
	Ranks []int
	// SelfRendezvous: the workers find each other themselves (memberlist, see
	// JoinCluster); the launcher neither waits for their listen lines nor
	// sends them peers.
	SelfRendezvous bool
	// Command returns the command line of rank's worker process.
	Command func(rank int) (path string, args []string)
	// Stderr receives rank 0's standard error as is (its progress display) and
	// the other ranks' lines prefixed with "[rank N] ".
	Stderr io.Writer
	// StartTimeout bounds the wait for every worker to listen (default 2 min:
	// the first run compiles nothing, but a loaded machine is slow to start N).
	StartTimeout time.Duration
	// Grace is how long a worker gets between SIGTERM and SIGKILL when the job
	// is stopped (default 5 s).
	Grace time.Duration
	// OnStart, if set, is told each worker's process id as it starts.
	OnStart func(rank, pid int)
	// Backend is the workers' backend name (the recipe's backend). Unless it
	// is cpu, each worker gets a GPU of its own where NVML sees GPUs:
	// CUDA_VISIBLE_DEVICES in its environment (see GPUAssignment).
	Backend string
	// GPUs counts this machine's GPUs; nil: NVML (device.GPUs). Tests stand in for it.
	GPUs func() (int, error)
	// Stop, if set, carries signals to pass on to every worker: a graceful
	// stop (each finishes its step, the workers agree on it, rank 0 writes a
	// checkpoint, and each exits 128+N), which RunLocal waits for without
	// killing anyone, and then returns a *SignalledError. A second signal is
	// passed on too (the workers then exit at once).
	Stop <-chan syscall.Signal
	// Env is added to every worker's environment (after this process's, so
	// it wins): how torus train hands its workers the run's secret
	// (SecretEnv), never on their command line.
	Env []string
}

// WorkerError says which rank ended the job, and how.
type WorkerError struct {
	Rank int
	Err  error
}

func (e *WorkerError) Error() string { return fmt.Sprintf("worker rank %d: %v", e.Rank, e.Err) }
func (e *WorkerError) Unwrap() error { return e.Err }

// SignalledError is RunLocal's result when the workers stopped on a signal
// passed on through LocalConfig.Stop, each exiting 128+Signal.
type SignalledError struct{ Signal syscall.Signal }

func (e *SignalledError) Error() string {
	return fmt.Sprintf("the workers stopped on %s", e.Signal)
}

type proc struct {
	stopped atomic.Bool // we signalled it: its death by a signal is ours, not a cause
	rank    int
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	addr    chan string
	exited  chan struct{} // closed when the process has exited; err and code are then set
	err     error
	code    int // the exit status (-1 when killed by a signal)
}

// RunLocal starts the workers, hands them their peers, and waits. It returns nil
// when every worker exits 0; otherwise the first failure (a *WorkerError naming
// the rank), after stopping the others. Cancelling ctx stops every worker.
func RunLocal(ctx context.Context, c LocalConfig) error {
	if c.Workers < 1 {
		return fmt.Errorf("launch: workers must be >= 1, got %d", c.Workers)
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 2 * time.Minute
	}
	if c.Grace == 0 {
		c.Grace = 5 * time.Second
	}
	if c.Ranks == nil {
		for r := range c.Workers {
			c.Ranks = append(c.Ranks, r)
		}
	}
	if len(c.Ranks) != c.Workers {
		return fmt.Errorf("launch: %d ranks for %d workers", len(c.Ranks), c.Workers)
	}
	var mu sync.Mutex // serialises writes to c.Stderr
	procs := make([]*proc, c.Workers)
	gpus := workerGPUs(c)
	stopAll := func() {
		for _, p := range procs {
			if p != nil && p.cmd.Process != nil {
				p.stopped.Store(true)
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM) // its whole process group
			}
		}
		deadline := time.NewTimer(c.Grace)
		defer deadline.Stop()
		late := false
		for _, p := range procs {
			if p == nil || p.cmd.Process == nil {
				continue
			}
			if !late {
				select {
				case <-p.exited:
					continue
				case <-deadline.C:
					late = true
				}
			}
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	for i, r := range c.Ranks {
		env := append(append([]string(nil), c.Env...), fmt.Sprintf("TORUS_RANK=%d", r))
		if gpus != nil {
			env = append(env, "CUDA_VISIBLE_DEVICES="+gpus[i])
		}
		p, err := start(r, env, c, &mu)
		if err != nil {
			stopAll()
			return err
		}
		procs[i] = p
	}
	if c.SelfRendezvous {
		for _, p := range procs {
			_ = p.stdin.Close()
		}
		return watch(ctx, procs, stopAll, c.Stop)
	}
	// Rendezvous: collect every address, then tell everyone.
	addrs := make([]string, c.Workers)
	timeout := time.After(c.StartTimeout)
	for r, p := range procs {
		select {
		case a, ok := <-p.addr:
			if !ok {
				<-p.exited
				err := p.err
				stopAll()
				return &WorkerError{Rank: r, Err: fmt.Errorf("exited before listening: %v", err)}
			}
			addrs[r] = a
		case <-timeout:
			stopAll()
			return &WorkerError{Rank: r, Err: fmt.Errorf("did not listen within %s", c.StartTimeout)}
		case <-ctx.Done():
			stopAll()
			return ctx.Err()
		case sig := <-c.Stop: // before training: nothing to save
			stopAll()
			return &SignalledError{Signal: sig}
		}
	}
	line, _ := json.Marshal(Peers{Addrs: addrs})
	for _, p := range procs {
		_, _ = p.stdin.Write(append(line, '\n'))
		_ = p.stdin.Close()
	}
	return watch(ctx, procs, stopAll, c.Stop)
}

// watch waits for every worker to exit; the first failure stops the others.
// Signals on stop are passed on to every worker, whose exits with 128+N are
// then expected: watch waits for them all.
func watch(ctx context.Context, procs []*proc, stopAll func(), stop <-chan syscall.Signal) error {
	exits := make(chan exit, len(procs))
	for _, p := range procs {
		go func() {
			<-p.exited
			exits <- exit{p.rank, p.err, p.stopped.Load(), p.code}
		}()
	}
	var passed syscall.Signal // the signal passed on, 0 before
	for left := len(procs); left > 0; {
		select {
		case e := <-exits:
			left--
			if e.err != nil && !(passed != 0 && e.code == 128+int(passed)) {
				settle(ctx, procs, settleTime)
				stopAll()
				return firstCause(e, exits)
			}
		case sig := <-stop:
			if passed == 0 {
				passed = sig
			}
			for _, p := range procs {
				if p.cmd.Process != nil {
					_ = syscall.Kill(-p.cmd.Process.Pid, sig) // its whole process group
				}
			}
		case <-ctx.Done():
			stopAll()
			return ctx.Err()
		}
	}
	if passed != 0 {
		return &SignalledError{Signal: passed}
	}
	return nil
}

// settleTime is how long the other workers get, after one failed, to notice
// on their own (a broken stream is seen at once) and exit with an error that
// names the lost rank, before they are stopped: a signal first would leave
// them saying only that they were cancelled.
const settleTime = 3 * time.Second

// settle waits until every worker has exited, at most d.
func settle(ctx context.Context, procs []*proc, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

type exit struct {
	rank    int
	err     error
	stopped bool // we had signalled it
	code    int
}

// firstCause picks the worker that ended the job: when one was killed from
// outside (a signal we did not send) and the others then failed because they
// lost it, the killed one is the cause, whichever exit was seen first.
func firstCause(first exit, more <-chan exit) error {
	cause := first
	outside := func(e exit) bool { return !e.stopped && strings.HasPrefix(e.err.Error(), "killed by") }
	for {
		select {
		case e := <-more:
			if e.err != nil && outside(e) && !outside(cause) {
				cause = e
			}
		default:
			return &WorkerError{Rank: cause.rank, Err: cause.err}
		}
	}
}

// start starts rank's worker with env added to this process's environment
// (where a name is in both, env's comes last and wins).
func start(rank int, env []string, c LocalConfig, mu *sync.Mutex) (*proc, error) {
	path, args := c.Command(rank)
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stopping a worker stops whatever it started
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, &WorkerError{Rank: rank, Err: fmt.Errorf("start %s: %w", path, err)}
	}
	if c.OnStart != nil {
		c.OnStart(rank, cmd.Process.Pid)
	}
	p := &proc{rank: rank, cmd: cmd, stdin: stdin, addr: make(chan string, 1), exited: make(chan struct{})}
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { // stdout: the listen line, then anything else as output
		defer pipes.Done()
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), ListenPrefix); ok && !sent {
				p.addr <- strings.TrimSpace(a)
				sent = true
				continue
			}
			writeLine(mu, c.Stderr, rank, sc.Text()+"\n")
		}
		if !sent {
			close(p.addr)
		}
	}()
	go func() { // stderr: rank 0's as is (its live progress line uses \r), others by line
		defer pipes.Done()
		if rank == 0 {
			buf := make([]byte, 4096)
			for {
				n, err := stderr.Read(buf)
				if n > 0 {
					mu.Lock()
					_, _ = c.Stderr.Write(buf[:n])
					mu.Unlock()
				}
				if err != nil {
					return
				}
			}
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			writeLine(mu, c.Stderr, rank, sc.Text()+"\n")
		}
	}()
	go func() {
		pipes.Wait() // read all output before Wait closes the pipes
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				err = fmt.Errorf("killed by %s", ws.Signal())
			} else {
				err = fmt.Errorf("exited with status %d", ee.ExitCode())
			}
		}
		p.err = err
		close(p.exited)
	}()
	return p, nil
}

func writeLine(mu *sync.Mutex, w io.Writer, rank int, s string) {
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(w, "[rank %d] %s", rank, s)
}
