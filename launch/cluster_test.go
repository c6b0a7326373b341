package launch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// freePort finds a port free for TCP on 127.0.0.1 (memberlist binds TCP and
// UDP on it; a clash makes the test fail loudly, not pass).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestClusterRendezvous: three workers started in reverse order on loopback
// all see the same world, ordered by rank, with each one's metadata.
func TestClusterRendezvous(t *testing.T) {
	rdzv := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const world = 3
	worlds := make([][]Member, world)
	errs := make([]error, world)
	clusters := make([]*Cluster, world)
	var wg sync.WaitGroup
	for r := world - 1; r >= 0; r-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := JoinCluster(ctx, ClusterConfig{
				Self:  Member{Job: "t", Rank: r, Node: r / 2, Addr: fmt.Sprintf("127.0.0.1:%d", 9000+r), Devices: []string{"cpu"}},
				World: world, Rdzv: rdzv, JoinTimeout: 20 * time.Second,
			})
			if err != nil {
				errs[r] = err
				return
			}
			clusters[r] = c
			worlds[r], errs[r] = c.Wait(ctx)
		}()
	}
	wg.Wait() // nobody leaves before everyone has seen the world, as in a job
	for _, c := range clusters {
		if c != nil {
			c.Close()
		}
	}
	for r := range world {
		if errs[r] != nil {
			t.Fatalf("rank %d: %v", r, errs[r])
		}
		for i, m := range worlds[r] {
			if m.Rank != i || m.Node != i/2 || m.Addr != fmt.Sprintf("127.0.0.1:%d", 9000+i) || m.Job != "t" || len(m.Devices) != 1 {
				t.Errorf("rank %d sees member %d as %+v", r, i, m)
			}
		}
	}
}

// TestClusterRefusesWrongKey: a worker with another key, or none, cannot join
// a keyed cluster, and the seed logs the refusal.
func TestClusterRefusesWrongKey(t *testing.T) {
	rdzv := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seedLog syncBuf
	key := bytes.Repeat([]byte{7}, 32)
	seed, err := JoinCluster(ctx, ClusterConfig{Self: Member{Job: "t", Rank: 0, Addr: "a:1"}, World: 2, Rdzv: rdzv, Key: key,
		Logger: slog.New(slog.NewTextHandler(&seedLog, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	for name, k := range map[string][]byte{"wrong key": bytes.Repeat([]byte{8}, 32), "no key": nil} {
		_, err := JoinCluster(ctx, ClusterConfig{Self: Member{Job: "t", Rank: 1, Addr: "b:1"}, World: 2, Rdzv: rdzv, Key: k,
			JoinTimeout: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.Contains(err.Error(), "could not join") {
			t.Errorf("%s: joined a keyed cluster (err %v)", name, err)
		}
	}
	if !strings.Contains(seedLog.String(), "level=ERROR") {
		t.Errorf("the seed logged no refusal:\n%s", seedLog.String())
	}
	t.Logf("seed's log: %s", seedLog.String())
}

// TestClusterLostOnDeath: a member that stops without leaving (as a killed
// process does) is reported by the others' Lost once the failure detector
// declares it dead; one that leaves is not.
func TestClusterLostOnDeath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := formWorld(ctx, t, 3)
	defer cs[0].Close()
	defer cs[1].Close()
	start := time.Now()
	cs[2].ml.Shutdown() // no Leave: to the others it just goes silent
	for _, r := range []int{0, 1} {
		select {
		case m := <-cs[r].Lost():
			if m.Rank != 2 {
				t.Errorf("rank %d lost rank %d, want 2", r, m.Rank)
			}
		case <-ctx.Done():
			t.Fatalf("rank %d: rank 2's death not reported", r)
		}
	}
	t.Logf("rank 2's death reported by both after %s", time.Since(start).Round(time.Millisecond))
}

// formWorld starts n members on loopback and waits until each sees all.
func formWorld(ctx context.Context, t *testing.T, n int) []*Cluster {
	t.Helper()
	rdzv := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cs := make([]*Cluster, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			c, err := JoinCluster(ctx, ClusterConfig{Self: Member{Job: "t", Rank: r, Addr: fmt.Sprint(r)}, World: n, Rdzv: rdzv,
				Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				_, err = c.Wait(ctx)
			}
			cs[r], errs[r] = c, err
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return cs
}

// TestClusterFinishIsNotLost: members that finish one after another, the last
// much later (rank 0 writing the final model), all leave, and none is lost.
func TestClusterFinishIsNotLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := formWorld(ctx, t, 3)
	finished := make(chan int, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for _, r := range []int{2, 1} {
		wg.Go(func() {
			errs[r] = cs[r].Finish(ctx, 30*time.Second)
			finished <- r
			cs[r].Close()
		})
	}
	for others := 0; others < 2; { // until rank 0 sees ranks 1 and 2 say they are done
		select {
		case r := <-finished:
			t.Fatalf("rank %d finished while rank 0 was still at work", r)
		case <-cs[0].changed:
		case <-ctx.Done():
			t.Fatal("ranks 1 and 2 never said they were done")
		}
		others = 0
		cs[0].mu.Lock()
		for _, v := range cs[0].view {
			if v.m.Rank != 0 && v.m.Done {
				others++
			}
		}
		cs[0].mu.Unlock()
	}
	errs[0] = cs[0].Finish(ctx, 30*time.Second)
	cs[0].Close()
	wg.Wait()
	for r, c := range cs {
		if errs[r] != nil {
			t.Errorf("rank %d: Finish: %v", r, errs[r])
		}
		select {
		case m := <-c.Lost():
			t.Errorf("rank %d lost rank %d, which had finished", r, m.Rank)
		default:
		}
	}
}
