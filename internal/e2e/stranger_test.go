package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStrangerCannotJoinARun: while two workers train over mutual TLS,
// started by torus train (the run's own secret) or by torus launch (a cluster
// secret), a client that holds a certificate of its own (not from the job's
// CA) and one that speaks no TLS both connect to rank 1's ports: both are
// refused, the worker logs each refusal, the client sees its handshake fail,
// and the job goes on training.
func TestStrangerCannotJoinARun(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(t *testing.T, rec, run string) []string
		code int // the exit status after SIGTERM
	}{
		{"torus train", func(t *testing.T, rec, run string) []string { return []string{"train", rec, "--out", run} }, 143},
		{"torus launch", func(t *testing.T, rec, run string) []string {
			key := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(key, []byte("the cluster's secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"launch", rec, "--out", run, "--nodes", "1", "--node-rank", "0", "--workers-per-node", "2", "--rdzv", freeLoopback(t), "--key-file", key}
		}, -2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := loopRecipe(t, 100000, 0, "parallel: {workers: 2}\n")
			run := filepath.Join(t.TempDir(), "run")
			cmd := exec.Command(torus, tc.args(t, rec, run)...)
			cmd.Env = envWithout("TORUS_CLUSTER_KEY")
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			strangers(t, done, &stderr, run)
			cmd.Process.Signal(syscall.SIGTERM) // the job ends as a preempted one does
			err := <-done
			if tc.code > 0 && exitCode(err) != tc.code {
				t.Errorf("%s after SIGTERM: %v, want exit %d:\n%s", tc.name, err, tc.code, stderr.String())
			}
		})
	}
}

func strangers(t *testing.T, done <-chan error, stderr *syncBuffer, run string) {
	exited := func() bool { return len(done) > 0 }
	if !waitFor(2*time.Minute, func() bool { return metricLines(run) >= 2 || exited() }) || exited() {
		t.Fatalf("training did not start:\n%s", stderr.String())
	}
	pid := 0
	for _, x := range pidLine.FindAllStringSubmatch(stderr.String(), -1) {
		if x[1] == "1" {
			pid, _ = strconv.Atoi(x[2])
		}
	}
	ports := listeningPorts(t, pid)
	if len(ports) == 0 {
		t.Fatalf("rank 1 (pid %d) listens on no TCP port", pid)
	}
	// A certificate of the client's own making.
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"torus-worker"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	refusedCert := false
	for _, port := range ports { // the ring's port among them (memberlist's too, under launch)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
			InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"},
			// Sent whatever CAs the server names (Certificates would be withheld as not from them).
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
			},
		})
		if err == nil { // TLS 1.3: the server's verdict on the client's certificate comes after the client's Finished
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err != nil && strings.Contains(err.Error(), "certificate") {
			refusedCert = true
			t.Logf("port %d, own certificate: %v", port, err)
		}
		// No TLS at all: HTTP/2's preface in the clear.
		raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			continue
		}
		raw.SetDeadline(time.Now().Add(2 * time.Second))
		raw.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		n, _ := raw.Read(make([]byte, 64))
		raw.Close()
		t.Logf("port %d, plaintext: the worker answered %d bytes", port, n)
	}
	if !refusedCert {
		t.Errorf("no port of rank 1 refused the client's certificate")
	}
	if !waitFor(time.Minute, func() bool { return strings.Count(stderr.String(), "refused a stream") >= 2 }) {
		t.Errorf("the worker did not log both refusals:\n%s", stderr.String())
	}
	before := metricLines(run)
	if !waitFor(time.Minute, func() bool { return metricLines(run) >= before+3 }) {
		t.Fatalf("the job stopped training after the strangers:\n%s", stderr.String())
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "refused a stream") {
			t.Logf("worker: %s", strings.TrimSpace(l))
		}
	}
}

// listeningPorts are the TCP ports pid listens on (from /proc: its socket
// inodes, matched in the network namespace's table).
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			_, port, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseInt(port, 16, 32); err == nil {
				ports = append(ports, int(p))
			}
		}
	}
	return ports
}
