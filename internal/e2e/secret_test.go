package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLaunchRefusesWrongSecret (issue 7, criterion 4): a node whose cluster
// secret differs cannot join the job; its launch fails saying so, and the node
// serving the rendezvous logs the refused gossip. (That a worker without the
// secret cannot send a tensor over gRPC is parallel's TestGRPCTokenRefusesIntruder.)
func TestLaunchRefusesWrongSecret(t *testing.T) {
	dir := t.TempDir()
	rec := tinyRecipe(t, dir, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rdzv := ln.Addr().String()
	ln.Close()
	secrets := []string{"the right one", "a wrong one"}
	logs := make([]bytes.Buffer, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for node := range 2 {
		wait := []string{"5s", "2s"}[node] // the seed outlives the joiner's tries
		cmd := exec.Command(torus, "launch", rec, "--set", "parallel.workers=2", "--nodes", "2", "--node-rank", fmt.Sprint(node),
			"--rdzv", rdzv, "--join-timeout", wait, "--max-restarts", "0", "--out", filepath.Join(dir, "run"), "--progress", "none")
		cmd.Env = append(os.Environ(), "TORUS_CLUSTER_KEY="+secrets[node])
		cmd.Stdout, cmd.Stderr = &logs[node], &logs[node]
		cmd.WaitDelay = 30 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { errs[node] = cmd.Wait() })
	}
	wg.Wait()
	for node := range 2 {
		t.Logf("node %d: %v\n%s", node, errs[node], logs[node].String())
		if errs[node] == nil {
			t.Errorf("node %d: launch succeeded with two secrets in one job", node)
		}
	}
	if s := logs[1].String(); !strings.Contains(s, "could not join the rendezvous") || !strings.Contains(s, "cluster secret") {
		t.Errorf("node 1 (wrong secret) does not say it could not join, nor hint at the secret")
	}
	if s := logs[0].String(); !strings.Contains(s, "could decrypt") {
		t.Errorf("node 0 (the rendezvous) did not log the refused gossip")
	}
}
