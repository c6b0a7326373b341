package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hosts is a set of network namespaces joined by a bridge: each one a host
// with its own address, 10.77.0.1 ... 10.77.0.N on 10.77.0.0/24. The bridge
// holds no address, so nothing of the machine's own routing changes, and
// names carry the test process's id, so runs side by side do not collide.
type hosts struct {
	t      *testing.T
	bridge string
	ns     []string
	outer  []string // each host's cable: its veth's end on the bridge
	addrs  []string
}

// ip runs ip(8), failing the test with its output.
func (h *hosts) ip(args ...string) {
	h.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		h.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newHosts builds n hosts, or skips the test where that is not allowed (not
// root, no ip(8), no network namespaces). Everything is removed at cleanup,
// whether the test passed or not.
func newHosts(t *testing.T, n int) *hosts {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds hosts in network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) (iproute2)")
	}
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	h := &hosts{t: t, bridge: "tbr" + id}
	probe := "torus-probe-" + id
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot make network namespaces here: %v: %s", err, out)
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	t.Cleanup(func() {
		for _, ns := range h.ns { // deleting a namespace deletes its end of the veth, and so the pair
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("cleanup: ip netns del %s: %v: %s", ns, err, out)
			}
		}
		if out, err := exec.Command("ip", "link", "del", h.bridge).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip link del %s: %v: %s", h.bridge, err, out)
		}
	})
	h.ip("link", "add", h.bridge, "type", "bridge")
	h.ip("link", "set", h.bridge, "up")
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("torus-%s-h%d", id, i)
		outer, inner := fmt.Sprintf("tv%sh%d", id, i), fmt.Sprintf("tv%sn%d", id, i)
		h.ip("netns", "add", ns)
		h.ns = append(h.ns, ns)
		h.ip("link", "add", outer, "type", "veth", "peer", "name", inner)
		h.ip("link", "set", inner, "netns", ns)
		h.outer = append(h.outer, outer)
		h.ip("link", "set", outer, "master", h.bridge)
		h.ip("link", "set", outer, "up")
		addr := fmt.Sprintf("10.77.0.%d", i)
		h.ip("-n", ns, "addr", "add", addr+"/24", "dev", inner)
		h.ip("-n", ns, "link", "set", inner, "up")
		h.ip("-n", ns, "link", "set", "lo", "up")
		h.addrs = append(h.addrs, addr)
	}
	return h
}

// launch runs `torus launch` on every host, one node each (node i on host
// i+1, the rendezvous), with the cluster secret, until all exit or timeout;
// onLine, if set, sees every line of output as it comes. It fails the test if
// any node fails, logging every node's output.
func (h *hosts) launch(rec, run string, timeout time.Duration, onLine func(node int, line string)) ([]string, []error) {
	t := h.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rdzv := h.addrs[0] + ":29400"
	logs := make([]*lineLog, len(h.ns))
	errs := make([]error, len(h.ns))
	var wg sync.WaitGroup
	for i := len(h.ns) - 1; i >= 0; i-- { // node 0, the seed, last: the others wait for it
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.ns[i], torus, "launch", rec,
			"--nodes", fmt.Sprint(len(h.ns)), "--node-rank", fmt.Sprint(i), "--rdzv", rdzv, "--job-id", "netns-test",
			"--out", run, "--progress", "plain")
		cmd.Env = append(os.Environ(), "TORUS_CLUSTER_KEY=netns-test-secret") // encrypted gossip, authenticated gRPC
		logs[i] = &lineLog{node: i, onLine: onLine}
		cmd.Stdout, cmd.Stderr = logs[i], logs[i]
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) } // launch stops its workers
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if errs[i] = cmd.Wait(); errs[i] != nil {
				cancel() // one node failed: do not wait out the others
			}
		})
	}
	wg.Wait()
	out := make([]string, len(h.ns))
	failed := false
	for i := range h.ns {
		out[i] = logs[i].String()
		failed = failed || errs[i] != nil
	}
	for i := range h.ns {
		if failed || testing.Verbose() {
			t.Logf("host %s (node %d): %v\n%s", h.addrs[i], i, errs[i], out[i])
		}
	}
	for i := range h.ns {
		if errs[i] != nil {
			t.Fatalf("torus launch on host %s failed: %v", h.addrs[i], errs[i])
		}
	}
	return out, errs
}

// lineLog keeps a process's output and shows each whole line to onLine.
type lineLog struct {
	node   int
	onLine func(node int, line string)
	mu     sync.Mutex
	all    bytes.Buffer
	part   []byte
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexAny(l.part, "\r\n")
		if i < 0 {
			break
		}
		if l.onLine != nil && i > 0 {
			l.onLine(l.node, string(l.part[:i]))
		}
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// tinyRecipe writes a recipe of a dim-16 model that trains in well under a
// second a step on 4 workers.
func tinyRecipe(t *testing.T, dir string, steps int, extra ...string) string {
	t.Helper()
	text := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(text, bytes.Repeat([]byte("a long and boring text about nothing at all. "), 400), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "tiny.yaml")
	if err := os.WriteFile(rec, []byte(fmt.Sprintf(`name: tiny
model: {dim: 16, layers: 1, heads: 2, kv_heads: 1, mlp_dim: 32}
data:
  sources: [{type: text_file, path: %s}]
  seq_len: 128
memory: {attn_block_q: 16, attn_block_k: 16}
parallel: {workers: 4}
schedule: {steps: %d, warmup_steps: 2}
log: {every: 1}
%s`, text, steps, strings.Join(extra, "\n"))), 0o644); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestLaunchAcrossFourHosts (issue 7, criterion 1): four hosts with their own
// addresses, `torus launch` on each with one worker, meet through memberlist at
// host 1 and train 30 steps; the loss curve equals one machine's 4-worker run.
func TestLaunchAcrossFourHosts(t *testing.T) {
	h := newHosts(t, 4)
	dir := t.TempDir()
	const steps = 30
	rec := tinyRecipe(t, dir, steps)

	ref := filepath.Join(dir, "one-machine")
	if b, err := exec.Command(torus, "train", rec, "--out", ref, "--progress", "none").CombinedOutput(); err != nil {
		t.Fatalf("torus train with 4 local workers: %v\n%s", err, b)
	}

	run := filepath.Join(dir, "four-hosts")
	logs, _ := h.launch(rec, run, 2*time.Minute, nil)
	if !strings.Contains(logs[0], "ring 10.77.0.1:") {
		t.Errorf("node 0's ring is not on the hosts' addresses:\n%s", logs[0])
	}
	want, got := losses(t, filepath.Join(ref, "metrics.jsonl")), losses(t, filepath.Join(run, "metrics.jsonl"))
	if len(want) != steps || len(got) != steps {
		t.Fatalf("steps: %d on one machine, %d across hosts, want %d", len(want), len(got), steps)
	}
	worst := 0.0
	for i := range want {
		d := math.Abs(want[i] - got[i])
		worst = max(worst, d)
		if d > 1e-6 {
			t.Errorf("step %d: loss %.8f on one machine, %.8f across 4 hosts", i+1, want[i], got[i])
		}
	}
	t.Logf("largest loss difference over %d steps: %.1e (loss %.4f -> %.4f)", steps, worst, want[0], want[steps-1])
}
