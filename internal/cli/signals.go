package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Signals: SIGINT, SIGTERM and SIGUSR1 (Slurm's --signal) stop a command. A
// training run registers a graceful stop (finish the step, write a checkpoint,
// say how to resume) and its command then exits 128+N; every other command's
// context is cancelled. A second signal exits at once, with 128+N.

var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1}

// signals routes the process's stop signals.
type signals struct {
	mu       sync.Mutex
	graceful func(syscall.Signal) // nil: cancel the context
	repeats  bool                 // graceful takes the second signal too (it passes it on to workers)
	got      syscall.Signal       // the first signal, 0 before
	count    int                  // signals received
	cancel   context.CancelFunc
	ch       chan os.Signal
	done     chan struct{}
	w        io.Writer
	exit     func(int) // os.Exit; tests stand in for it
}

type signalsKey struct{}

// withSignals starts routing stop signals for the command run under ctx.
func withSignals(parent context.Context, w io.Writer) (context.Context, *signals) {
	ctx, cancel := context.WithCancel(parent)
	s := &signals{cancel: cancel, ch: make(chan os.Signal, 2), done: make(chan struct{}), w: w, exit: os.Exit}
	signal.Notify(s.ch, stopSignals...)
	go s.loop()
	return context.WithValue(ctx, signalsKey{}, s), s
}

func (s *signals) close() {
	signal.Stop(s.ch)
	close(s.done)
	s.cancel()
}

func (s *signals) loop() {
	for {
		select {
		case <-s.done:
			return
		case got := <-s.ch:
			s.handle(got.(syscall.Signal))
		}
	}
}

func (s *signals) handle(sig syscall.Signal) {
	s.mu.Lock()
	s.count++
	first, graceful, n := s.got == 0, s.graceful, s.count
	if first {
		s.got = sig
	}
	passOn := graceful != nil && s.repeats && n == 2
	s.mu.Unlock()
	switch {
	case passOn:
		fmt.Fprintf(s.w, "\ntorus: %s again: the workers exit now\n", signalName(sig))
		graceful(sig)
	case !first:
		fmt.Fprintf(s.w, "\ntorus: %s again: exiting now\n", signalName(sig))
		s.exit(128 + int(sig))
	case graceful != nil:
		fmt.Fprintf(s.w, "\ntorus: %s: stopping after the step in progress and writing a checkpoint (a second signal exits at once)\n", signalName(sig))
		graceful(sig)
	default:
		s.cancel()
	}
}

// onStopSignal makes the first stop signal call stop instead of cancelling
// ctx (a run stopping gracefully); it returns the signal already received, if
// one came before (then stop is called at once too).
func onStopSignal(ctx context.Context, stop func(syscall.Signal)) { onStopSignals(ctx, stop, false) }

// onStopSignals is onStopSignal; with repeats, the second signal goes to stop
// too (a launcher passing it on to its workers), and only a third exits at once.
func onStopSignals(ctx context.Context, stop func(syscall.Signal), repeats bool) {
	s, _ := ctx.Value(signalsKey{}).(*signals)
	if s == nil {
		return
	}
	s.mu.Lock()
	s.graceful, s.repeats = stop, repeats
	got := s.got
	s.mu.Unlock()
	if got != 0 {
		stop(got)
	}
}

// receivedSignal is the first stop signal this process got (0: none).
func receivedSignal(ctx context.Context) syscall.Signal {
	s, _ := ctx.Value(signalsKey{}).(*signals)
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

// signalStop is a command's result after a graceful stop on sig: Main exits 128+sig.
type signalStop struct {
	sig syscall.Signal
	msg string
}

func (e *signalStop) Error() string { return e.msg }

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	}
	return sig.String()
}
