package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
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

// TestStrangerCannotJoinALocalRun: while torus train's two workers train
// over mutual TLS, a client that holds a certificate of its own (not from the
// run's CA) and one that speaks no TLS both connect to rank 1's port: both are
// refused, the worker logs each refusal, the client sees its handshake fail,
// and the job goes on to its last step.
func TestStrangerCannotJoinALocalRun(t *testing.T) {
	rec := loopRecipe(t, 100000, 0, "parallel: {workers: 2}\n")
	run := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(torus, "train", rec, "--out", run)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if !waitFor(2*time.Minute, func() bool { return metricLines(run) >= 2 }) {
		t.Fatalf("training did not start:\n%s", stderr.String())
	}
	m := pidLine.FindAllStringSubmatch(stderr.String(), -1)
	pid := 0
	for _, x := range m {
		if x[1] == "1" {
			pid, _ = strconv.Atoi(x[2])
		}
	}
	ports := listeningPorts(t, pid)
	if len(ports) == 0 {
		t.Fatalf("rank 1 (pid %d) listens on no TCP port", pid)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])

	// A certificate of the client's own making.
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"torus-worker"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
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
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client with its own certificate: %v, want the handshake refused over the certificate", err)
	}
	t.Logf("own certificate: %v", err)

	// No TLS at all: HTTP/2's preface in the clear.
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	raw.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	buf := make([]byte, 64)
	n, _ := raw.Read(buf)
	raw.Close()
	t.Logf("plaintext: the worker answered %d bytes (%s)", n, hex.EncodeToString(buf[:n]))

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
	cmd.Process.Signal(syscall.SIGTERM) // the job ends as a preempted one does
	if err := cmd.Wait(); exitCode(err) != 143 {
		t.Errorf("torus train after SIGTERM: %v, want exit 143:\n%s", err, stderr.String())
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
