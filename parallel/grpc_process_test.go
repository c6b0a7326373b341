package parallel_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/torusml/torus/parallel"
)

// Environment of the helper process that TestGRPCPeerKilled starts.
const (
	helperEnv          = "TORUS_PARALLEL_TEST_HELPER"
	helperRankEnv      = "TORUS_PARALLEL_TEST_RANK"
	helperSizeEnv      = "TORUS_PARALLEL_TEST_SIZE"
	helperKeepaliveEnv = "TORUS_PARALLEL_TEST_KEEPALIVE"
)

// TestHelperProcess is not a test: it is rank $TORUS_PARALLEL_TEST_RANK of a
// gRPC job, run in a child process by TestGRPCPeerKilled. It prints its address,
// reads every rank's addresses (comma-separated) from stdin, joins the job,
// prints "ready" and blocks in Recv until it is killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("run by TestGRPCPeerKilled")
	}
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	rank, err1 := strconv.Atoi(os.Getenv(helperRankEnv))
	size, err2 := strconv.Atoi(os.Getenv(helperSizeEnv))
	keepalive, err3 := time.ParseDuration(os.Getenv(helperKeepaliveEnv))
	if err := errors.Join(err1, err2, err3); err != nil {
		fail(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	fmt.Println("addr", lis.Addr())
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		fail(err)
	}
	addrs := strings.Split(strings.TrimSpace(line), ",")
	if len(addrs) != size {
		fail(fmt.Errorf("got %d addresses, want %d", len(addrs), size))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: rank, Addrs: addrs, Listener: lis,
		Keepalive: keepalive})
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	_, err = tr.Recv(context.Background(), 0, "never")
	fail(err) // only if the parent's ranks failed first
}

// child is a rank of a gRPC job in a child process (TestHelperProcess).
type child struct {
	cmd    *exec.Cmd
	stdin  io.Writer
	lines  chan string
	exited chan error
}

// startChild starts rank rank of a size-rank job in a child process.
func startChild(t *testing.T, rank, size int, keepalive time.Duration) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperRankEnv+"="+strconv.Itoa(rank),
		helperSizeEnv+"="+strconv.Itoa(size), helperKeepaliveEnv+"="+keepalive.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 16), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.exited <- cmd.Wait() // after stdout is drained, as Wait requires
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	return c
}

// expect waits for the child's line starting with prefix and returns the rest.
func (c *child) expect(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before printing %q", prefix)
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return strings.TrimSpace(rest)
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("child: %s", l)
			}
		case <-deadline:
			t.Fatalf("child did not print %q in time", prefix)
		}
	}
}

// jobWithChild starts a 3-rank job: ranks 0 and 1 here, rank 2 in a child.
func jobWithChild(t *testing.T, keepalive time.Duration) ([]*parallel.GRPCTransport, *child) {
	t.Helper()
	const size, childRank = 3, 2
	c := startChild(t, childRank, size, keepalive)
	lis := []net.Listener{listen(t), listen(t)}
	addrs := []string{lis[0].Addr().String(), lis[1].Addr().String(), c.expect(t, "addr ")}
	if _, err := fmt.Fprintln(c.stdin, strings.Join(addrs, ",")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ts := make([]*parallel.GRPCTransport, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range ts {
		wg.Go(func() {
			ts[r], errs[r] = parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: r, Addrs: addrs, Listener: lis[r],
				Keepalive: keepalive, Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil))})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, tr := range ts {
			if tr != nil {
				_ = tr.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "ready")
	return ts, c
}

// expectLost checks that rank 0's Recv from the child, and rank 1's Recv from
// rank 0 (alive, in this process), both fail within limit of hurt() naming the child.
func expectLost(t *testing.T, ts []*parallel.GRPCTransport, hurt func(), limit time.Duration) {
	t.Helper()
	const childRank = 2
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make(chan error, 2)
	go func() { _, err := ts[0].Recv(ctx, childRank, "x"); results <- err }()
	go func() { _, err := ts[1].Recv(ctx, 0, "x"); results <- err }()
	hurt()
	start := time.Now()
	timeout := time.After(limit)
	for range 2 {
		select {
		case err := <-results:
			var pe *parallel.PeerError
			if !errors.As(err, &pe) || pe.Rank != childRank || !errors.Is(err, parallel.ErrPeerLost) {
				t.Errorf("got %v, want ErrPeerLost naming rank %d", err, childRank)
			}
			t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
		case <-timeout:
			t.Fatalf("no error %v after the child was hurt", limit)
		}
	}
}

// TestGRPCPeerKilled kills the child rank with SIGKILL while rank 0 waits for
// it: every pending call in this process must fail naming it within 10 s.
func TestGRPCPeerKilled(t *testing.T) {
	ts, c := jobWithChild(t, 0)
	expectLost(t, ts, func() {
		if err := c.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
	}, 10*time.Second)
}

// TestGRPCPeerSilent stops the child rank (SIGSTOP): its sockets stay open but
// it answers nothing, which keepalive (1 s here) must notice.
func TestGRPCPeerSilent(t *testing.T) {
	ts, c := jobWithChild(t, time.Second)
	expectLost(t, ts, func() {
		if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}, 10*time.Second)
}

// TestGRPCCleanClose: when ranks close one after the other, nobody logs an
// error, and a rank still waiting for a closed one gets ErrPeerLost naming it.
func TestGRPCCleanClose(t *testing.T) {
	logs := &syncBuffer{}
	ts := newGRPCJob(t, 3, func(c *parallel.GRPCConfig) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Rank 2 is waiting for rank 1 when rank 1 leaves.
	pending := make(chan error, 1)
	go func() { _, err := ts[2].Recv(ctx, 1, "x"); pending <- err }()
	for _, r := range []int{1, 0} {
		start := time.Now()
		if err := ts[r].Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("rank %d's Close took %v", r, d)
		}
	}
	err := <-pending
	var pe *parallel.PeerError
	if !errors.As(err, &pe) || pe.Rank != 1 || !errors.Is(err, parallel.ErrPeerLost) {
		t.Errorf("pending Recv: got %v, want ErrPeerLost naming rank 1", err)
	}
	if err := ts[2].Send(ctx, 0, "x", scalarI32(1)); !errors.As(err, &pe) || pe.Rank != 0 {
		t.Errorf("Send to closed rank 0: got %v", err)
	}
	if err := ts[2].Close(); err != nil {
		t.Fatal(err)
	}
	if s := logs.String(); strings.Contains(s, "level=ERROR") || strings.Contains(s, "level=WARN") {
		t.Errorf("a clean close logged:\n%s", s)
	}
}

// TestGRPCCloseTogether: every rank closing at once, as at the end of a job,
// is quick and logs nothing.
func TestGRPCCloseTogether(t *testing.T) {
	logs := &syncBuffer{}
	ts := newGRPCJob(t, 4, func(c *parallel.GRPCConfig) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	start := time.Now()
	var wg sync.WaitGroup
	for _, tr := range ts {
		wg.Go(func() { _ = tr.Close() })
	}
	wg.Wait()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closing took %v", d)
	}
	if s := logs.String(); s != "" {
		t.Errorf("closing together logged:\n%s", s)
	}
}

// TestGRPCSendTooLarge: a message over MaxMessageBytes is refused by Send,
// before the peer would have to refuse it.
func TestGRPCSendTooLarge(t *testing.T) {
	ts := newGRPCJob(t, 2, func(c *parallel.GRPCConfig) { c.MaxMessageBytes = 1024 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := tensors.FromShape(shapes.Make(dtypes.Float32, 1024))
	if err := ts[0].Send(ctx, 1, "big", big); err == nil || !strings.Contains(err.Error(), "MaxMessageBytes") {
		t.Fatalf("got %v, want an error naming MaxMessageBytes", err)
	}
	if err := ts[0].Send(ctx, 1, "small", scalarI32(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts[1].Recv(ctx, 0, "small"); err != nil {
		t.Fatal(err)
	}
}

func TestGRPCConfigValidate(t *testing.T) {
	lis := listen(t)
	defer lis.Close()
	for _, c := range []struct {
		cfg  parallel.GRPCConfig
		want []string
	}{
		{parallel.GRPCConfig{Rank: 2, Addrs: []string{"a:1", "b:1"}, Listener: lis}, []string{"Rank 2"}},
		{parallel.GRPCConfig{Rank: -1, Addrs: []string{"a:1"}, Listener: lis}, []string{"Rank -1"}},
		{parallel.GRPCConfig{Rank: 0, Addrs: []string{"a:1"}}, []string{"Listener"}},
		{parallel.GRPCConfig{Rank: 0, Addrs: []string{""}, Listener: lis, ChunkBytes: 1 << 30,
			MaxMessageBytes: -1, ConnectTimeout: -1},
			[]string{"Addrs[0]", "ChunkBytes", "MaxMessageBytes", "ConnectTimeout"}},
	} {
		_, err := parallel.NewGRPC(context.Background(), c.cfg)
		if err == nil {
			t.Errorf("%+v: no error", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %s", err, w)
			}
		}
	}
}

// TestGRPCConnectAnyOrder: a rank may start listening after the others dial it.
func TestGRPCConnectAnyOrder(t *testing.T) {
	lis := []net.Listener{listen(t), listen(t)}
	addrs := []string{lis[0].Addr().String(), lis[1].Addr().String()}
	lis[1].Close() // rank 1 is not there yet
	quiet := slog.New(slog.NewTextHandler(&syncBuffer{}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rank0 := make(chan error, 1)
	go func() {
		tr, err := parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: 0, Addrs: addrs, Listener: lis[0], Logger: quiet})
		if err == nil {
			defer tr.Close()
			_, err = tr.Recv(ctx, 1, "hi")
		}
		rank0 <- err
	}()
	l1, err := net.Listen("tcp", addrs[1])
	if err != nil {
		t.Skipf("port of rank 1 was taken meanwhile: %v", err)
	}
	tr1, err := parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: 1, Addrs: addrs, Listener: l1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer tr1.Close()
	if err := tr1.Send(ctx, 0, "hi", scalarI32(1)); err != nil {
		t.Fatal(err)
	}
	if err := <-rank0; err != nil {
		t.Fatal(err)
	}
}

// TestGRPCConnectTimeout: a job whose peer never comes fails after
// ConnectTimeout, naming it.
func TestGRPCConnectTimeout(t *testing.T) {
	lis := []net.Listener{listen(t), listen(t)}
	addrs := []string{lis[0].Addr().String(), lis[1].Addr().String()}
	lis[1].Close() // rank 1 never comes
	start := time.Now()
	_, err := parallel.NewGRPC(context.Background(), parallel.GRPCConfig{Rank: 0, Addrs: addrs,
		Listener: lis[0], ConnectTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil))})
	if err == nil || !strings.Contains(err.Error(), "rank 1") {
		t.Fatalf("got %v, want an error naming rank 1", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v", d)
	}
}
