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
