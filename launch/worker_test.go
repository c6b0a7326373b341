package launch_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/launch"
	"github.com/torusml/torus/parallel"
)

// TestJoinWorker brings up two workers through the launcher's handshake (each
// prints its listen line; the test, as the launcher, answers with every
// address), then sends a tensor round the ring they formed: over mutual TLS
// from the cluster secret or from a site's certificates, or, on loopback with
// --insecure, plaintext.
func TestJoinWorker(t *testing.T) {
	site := sitePKI(t, t.TempDir(), 2)
	for _, tc := range []struct {
		name string
		sec  func(rank int) launch.Security
	}{
		{"cluster secret", func(int) launch.Security { return launch.Security{Secret: []byte("s3cret")} }},
		{"site certificates", func(rank int) launch.Security {
			return launch.Security{TLSCert: site.certs[rank], TLSKey: site.keys[rank], TLSCA: site.ca}
		}},
		{"insecure on loopback", func(int) launch.Security { return launch.Security{Insecure: true} }},
	} {
		t.Run(tc.name, func(t *testing.T) { testJoinWorker(t, tc.sec) })
	}
}

func testJoinWorker(t *testing.T, sec func(rank int) launch.Security) {
	const world = 2
	layout := parallel.Topology{Workers: world, DP: 1, SeqLen: 8}
	var (
		wg      sync.WaitGroup
		workers [world]*launch.Worker
		errs    [world]error
		addrs   = make([]string, world)
		stdins  [world]*io.PipeWriter
	)
	for rank := range world {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		stdins[rank] = inW
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[rank], _, errs[rank] = launch.JoinWorker(context.Background(), launch.WorkerConfig{
				Rank: rank, Layout: layout, Stdin: inR, Stdout: outW, Security: sec(rank),
			})
			outW.Close()
		}()
		line, err := bufio.NewReader(outR).ReadString('\n')
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), launch.ListenPrefix)
		if err != nil || !ok {
			t.Fatalf("rank %d's first line %q (%v), want %s HOST:PORT", rank, line, err, launch.ListenPrefix)
		}
		addrs[rank] = addr
		go io.Copy(io.Discard, outR)
	}
	peers, _ := json.Marshal(launch.Peers{Addrs: addrs})
	for _, in := range stdins {
		in.Write(append(peers, '\n'))
	}
	wg.Wait()
	for rank, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", rank, err)
		}
		defer workers[rank].Close()
	}
	if m := workers[1].Mesh; m != (parallel.Mesh{World: 2, DP: 1, SP: 2}) {
		t.Errorf("mesh %+v, want 2 workers as sp 2", m)
	}
	ctx := context.Background()
	if err := workers[0].T.Send(ctx, 1, "hello", tensors.FromValue([]float32{1, 2, 3})); err != nil {
		t.Fatal(err)
	}
	got, err := workers[1].T.Recv(ctx, 0, "hello")
	if err != nil || len(got) != 1 || tensors.MustCopyFlatData[float32](got[0])[2] != 3 {
		t.Fatalf("rank 1 received %v, %v", got, err)
	}
}

// TestJoinWorkerRefuses: a layout, rank or security that cannot work fails
// before anything listens, naming what is wrong.
func TestJoinWorkerRefuses(t *testing.T) {
	two := parallel.Topology{Workers: 2, DP: 1}
	dir := t.TempDir()
	site := sitePKI(t, dir, 1)
	for _, tc := range []struct {
		name string
		c    launch.WorkerConfig
		want string
	}{
		{"layout", launch.WorkerConfig{Layout: parallel.Topology{Workers: 4, DP: 1, SP: 3}}, "dp (1) * sp (3) = 3, but workers = 4"},
		{"rank", launch.WorkerConfig{Rank: 2, Layout: parallel.Topology{Workers: 2, DP: 1}}, "rank 2 outside [0, 2)"},
		{"zigzag", launch.WorkerConfig{Layout: parallel.Topology{Workers: 2, DP: 1, SeqLen: 6}}, "multiple of 2*sp = 4"},
		{"no secret", launch.WorkerConfig{Layout: two}, "no cluster secret: set TORUS_CLUSTER_KEY or --key-file"},
		{"insecure across machines", launch.WorkerConfig{Layout: two, Listen: "10.1.2.3:0", Security: launch.Security{Insecure: true}},
			"--insecure: 10.1.2.3:0 is not a loopback address"},
		{"insecure rendezvous elsewhere", launch.WorkerConfig{Layout: two, Rdzv: "10.1.2.3:29400", Security: launch.Security{Insecure: true}},
			"--insecure: 10.1.2.3:29400 is not a loopback address"},
		{"insecure with a secret", launch.WorkerConfig{Layout: two, Security: launch.Security{Insecure: true, Secret: []byte("s")}},
			"--insecure with a cluster secret"},
		{"half the site's files", launch.WorkerConfig{Layout: two, Security: launch.Security{TLSCert: site.certs[0]}},
			"missing [--tls-key --tls-ca]"},
		{"site key missing", launch.WorkerConfig{Layout: two, Security: launch.Security{TLSCert: site.certs[0],
			TLSKey: filepath.Join(dir, "nope.pem"), TLSCA: site.ca}}, "nope.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := launch.JoinWorker(context.Background(), tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("JoinWorker: %v, want %q", err, tc.want)
			}
		})
	}
}
