package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Issue 20: every stream is mutual TLS, local runs included; plaintext only
// with --insecure on loopback.

// envWithout is this process's environment less the named variables.
func envWithout(names ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

// freeLoopback is a loopback HOST:PORT nothing listens on (now).
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestLaunchSecurityRefusals: torus launch without a way to secure its
// streams, or with --insecure off loopback, refuses to start, saying what to
// do, before it starts a worker.
func TestLaunchSecurityRefusals(t *testing.T) {
	dir := t.TempDir()
	rec := tinyRecipe(t, dir, 3)
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("a secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no secret", []string{"--rdzv", freeLoopback(t)}, "no cluster secret: set TORUS_CLUSTER_KEY or --key-file FILE"},
		{"insecure across machines", []string{"--rdzv", "192.0.2.7:29400", "--insecure"}, "--insecure: 192.0.2.7:29400 is not a loopback address"},
		{"insecure binding elsewhere", []string{"--rdzv", freeLoopback(t), "--insecure", "--bind", "192.0.2.8"}, "--insecure: 192.0.2.8 is not a loopback address"},
		{"insecure with a secret", []string{"--rdzv", freeLoopback(t), "--insecure", "--key-file", keyFile}, "--insecure with a cluster secret"},
		{"half a site's certificates", []string{"--rdzv", freeLoopback(t), "--tls-cert", keyFile}, "missing [--tls-key --tls-ca]"},
		{"a site's certificate that is not one", []string{"--rdzv", freeLoopback(t), "--tls-cert", keyFile, "--tls-key", keyFile, "--tls-ca", keyFile},
			"certificate " + keyFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"launch", rec, "--set", "parallel.workers=1", "--nodes", "1", "--node-rank", "0",
				"--out", filepath.Join(t.TempDir(), "run"), "--progress", "none"}, tc.args...)
			cmd := exec.Command(torus, args...)
			cmd.Env = envWithout("TORUS_CLUSTER_KEY")
			cmd.WaitDelay = 10 * time.Second
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("torus launch succeeded:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("torus launch does not say %q:\n%s", tc.want, out)
			}
			if strings.Contains(string(out), "worker rank 0 pid") {
				t.Errorf("torus launch started a worker:\n%s", out)
			}
		})
	}
}

// TestLocalWorkersGetARunSecret: torus train gives its workers a fresh secret
// for the run, in their environment and not on their command line, and they
// train over mutual TLS with it.
func TestLocalWorkersGetARunSecret(t *testing.T) {
	dir := t.TempDir()
	rec := tinyRecipe(t, dir, 20)
	cmd := exec.Command(torus, "train", rec, "--set", "parallel.workers=2", "--out", filepath.Join(dir, "run"), "--progress", "plain")
	cmd.Env = append(envWithout("TORUS_CLUSTER_KEY"), "TORUS_CLUSTER_KEY=the user's own") // the run's own wins
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var log bytes.Buffer
	secrets := map[string]bool{}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		m := pidLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		env, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		cmdline, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("worker rank %s: %v", m[1], err)
		}
		secret := ""
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("TORUS_CLUSTER_KEY=")); ok {
				secret = string(v) // the last one is the one that counts
			}
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(secret) {
			t.Errorf("worker rank %s's TORUS_CLUSTER_KEY is %q, want the run's secret", m[1], secret)
			continue
		}
		secrets[secret] = true
		if bytes.Contains(cmdline, []byte(secret)) {
			t.Errorf("worker rank %s's command line holds the secret: %q", m[1], cmdline)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("torus train: %v\n%s", err, log.String())
	}
	if len(secrets) != 1 {
		t.Errorf("the workers had %d different secrets, want one for the run:\n%s", len(secrets), log.String())
	}
}

// TestLoopbackStreamsEncrypted captures loopback while two workers train:
// run over --insecure (plaintext) first, the capture holds the ring's message
// tags and tensor bytes in the clear, which shows the capture sees the
// streams; run as torus train (mutual TLS with the run's secret), the same
// tags and bytes appear nowhere, and the capture holds TLS records of at least
// the size of the plaintext run's streams. Both runs and their captures are
// in a network namespace of their own, so that its loopback carries nothing
// but the run's streams: on the machine's own lo every other process's
// traffic is captured too, and another plaintext run there (a test beside
// this one) would carry the same ring tags. Needs tcpdump or tshark, ip(8)
// and root (capturing packets, making the namespace).
func TestLoopbackStreamsEncrypted(t *testing.T) {
	capturer := ""
	for _, tool := range []string{"tcpdump", "tshark"} {
		if p, err := exec.LookPath(tool); err == nil {
			capturer = p
			break
		}
	}
	if capturer == "" {
		t.Skip("neither tcpdump nor tshark is installed: skipping the packet capture of a loopback run (install tcpdump to run it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("capturing packets on lo needs root")
	}
	ns := newHosts(t, 1).ns[0] // skips without root or ip(8); its lo is up
	dir := t.TempDir()
	rec := tinyRecipe(t, dir, 3)

	plain := capture(t, ns, capturer, filepath.Join(dir, "plain.pcap"), func() error {
		cmd := exec.Command("ip", "netns", "exec", ns, torus, "launch", rec, "--set", "parallel.workers=2", "--nodes", "1", "--node-rank", "0",
			"--workers-per-node", "2", "--rdzv", "127.0.0.1:29400", "--insecure", "--max-restarts", "0",
			"--out", filepath.Join(dir, "plain"), "--progress", "none")
		cmd.Env = envWithout("TORUS_CLUSTER_KEY")
		return cmd.Run()
	})
	patterns := clearPatterns(plain)
	if len(patterns) < 2 {
		t.Fatalf("the capture of the plaintext run (%d bytes) holds no ring message in the clear: the capture does not see the streams", len(plain))
	}
	sealed := capture(t, ns, capturer, filepath.Join(dir, "tls.pcap"), func() error {
		cmd := exec.Command("ip", "netns", "exec", ns, torus, "train", rec, "--set", "parallel.workers=2", "--out", filepath.Join(dir, "tls"), "--progress", "none")
		cmd.Env = envWithout("TORUS_CLUSTER_KEY")
		return cmd.Run()
	})
	for _, p := range patterns {
		if bytes.Contains(sealed, p) {
			t.Errorf("the TLS run's capture holds %q, seen in the clear in the plaintext run", p)
		}
	}
	// That nothing is seen means something only if the capture saw the TLS
	// run's streams: its TLS records (application data) must carry at least
	// the tensor bytes the plaintext run's streams did.
	records, recordBytes := tlsRecords(sealed)
	tensorBytes := ringBytes(plain)
	if recordBytes < tensorBytes {
		t.Errorf("the TLS run's capture (%d bytes) holds %d TLS records of %d bytes, less than the %d bytes of ring messages in the plaintext run's: the capture does not see the TLS streams",
			len(sealed), records, recordBytes, tensorBytes)
	}
	t.Logf("%d patterns of the plaintext run's %d bytes (%d of ring message data); none in the TLS run's %d bytes (%d TLS records, %d bytes)",
		len(patterns), len(plain), tensorBytes, len(sealed), records, recordBytes)
}

// capture runs run while capturing TCP on the loopback of the network
// namespace ns into file, and returns what was captured (pcap: the packets'
// bytes, headers between them).
func capture(t *testing.T, ns, tool, file string, run func() error) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"-i", "lo", "-w", file, "-U", "tcp"} // tcpdump: "listening on lo" when ready
	ready := "listening on"
	if filepath.Base(tool) == "tshark" {
		args, ready = []string{"-i", "lo", "-w", file, "-f", "tcp"}, "Capturing on"
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, tool}, args...)...) // ip execs the tool: signals reach it
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start %s: %v", tool, err)
	}
	var said bytes.Buffer
	sc := bufio.NewScanner(stderr)
	for !strings.Contains(said.String(), ready) {
		if !sc.Scan() {
			_ = cmd.Wait()
			t.Skipf("%s did not start capturing on lo:\n%s", tool, said.String())
		}
		said.WriteString(sc.Text() + "\n")
	}
	go io.Copy(io.Discard, stderr)
	runErr := run()
	_ = cmd.Process.Signal(syscall.SIGINT) // flushes the file and exits
	_ = cmd.Wait()
	if runErr != nil {
		t.Fatalf("the run under capture failed: %v", runErr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ringTag is a tag of ring attention's messages (parallel/ring_msg.go).
var ringTag = regexp.MustCompile(`ring/[0-9]+/[a-z]+/[0-9]+`)

// clearPatterns finds, in a capture of plaintext streams, the ring's message
// tags and, after each (the chunk frame's u32 dataLen, then the data: see
// parallel/grpc_frame.go), 32 bytes of tensor data varied enough not to
// turn up by chance.
func clearPatterns(capture []byte) [][]byte {
	seen := map[string]bool{}
	var out [][]byte
	add := func(p []byte) {
		if !seen[string(p)] {
			seen[string(p)] = true
			out = append(out, p)
		}
	}
	for _, loc := range ringTag.FindAllIndex(capture, -1) {
		add(capture[loc[0]:loc[1]])
		data := loc[1] + 4
		if data+32 > len(capture) || binary.LittleEndian.Uint32(capture[loc[1]:data]) < 32 {
			continue
		}
		p := capture[data : data+32]
		distinct := map[byte]bool{}
		for _, b := range p {
			distinct[b] = true
		}
		if len(distinct) >= 16 && len(out) < 64 {
			add(p)
		}
	}
	return out
}

// ringBytes is the data of the ring's messages in a capture of plaintext
// streams: after each tag, the chunk frame's u32 dataLen (see clearPatterns).
func ringBytes(capture []byte) int64 {
	var n int64
	for _, loc := range ringTag.FindAllIndex(capture, -1) {
		if loc[1]+4 <= len(capture) {
			if l := binary.LittleEndian.Uint32(capture[loc[1] : loc[1]+4]); l <= 16<<20 {
				n += int64(l)
			}
		}
	}
	return n
}

// tlsRecords counts the TLS 1.3 application data records in a capture (type
// 23, legacy version 3.3, a length of at most 2^14+256) and adds up their
// lengths. Where a record's header falls across two packets, or a record is
// split across several, the pcap headers between them hide the header from
// this count, so it is a lower bound.
func tlsRecords(capture []byte) (records int, bytes int64) {
	for i := 0; i+5 <= len(capture); i++ {
		if capture[i] != 23 || capture[i+1] != 3 || capture[i+2] != 3 {
			continue
		}
		if l := int(binary.BigEndian.Uint16(capture[i+3 : i+5])); l > 0 && l <= 1<<14+256 {
			records++
			bytes += int64(l)
		}
	}
	return records, bytes
}

// siteCerts writes a site's CA (ca.pem) and, signed by it, a certificate and
// key for each node (node<i>.pem, node<i>-key.pem) into dir.
func siteCerts(t *testing.T, dir string, nodes int) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "site CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	for i := range nodes {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: fmt.Sprintf("node%d", i)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		write(fmt.Sprintf("node%d.pem", i), "CERTIFICATE", der)
		write(fmt.Sprintf("node%d-key.pem", i), "PRIVATE KEY", keyDER)
	}
}

// TestLaunchSiteCertificatesAcrossHosts: two hosts (network namespaces),
// torus launch on each with the site's own certificates (--tls-cert, --tls-key,
// --tls-ca; no cluster secret): the workers it starts get the files, their
// streams are mutual TLS against the site's CA, and the job trains.
func TestLaunchSiteCertificatesAcrossHosts(t *testing.T) {
	h := newHosts(t, 2)
	dir := t.TempDir()
	siteCerts(t, dir, 2)
	rec := tinyRecipe(t, dir, 5)
	rdzv := h.addrs[0] + ":29400"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outs := make([]bytes.Buffer, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := 1; i >= 0; i-- {
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.ns[i], torus, "launch", rec, "--set", "parallel.workers=2",
			"--nodes", "2", "--node-rank", fmt.Sprint(i), "--rdzv", rdzv, "--job-id", "site-tls", "--max-restarts", "0",
			"--tls-cert", filepath.Join(dir, fmt.Sprintf("node%d.pem", i)), "--tls-key", filepath.Join(dir, fmt.Sprintf("node%d-key.pem", i)),
			"--tls-ca", filepath.Join(dir, "ca.pem"), "--out", filepath.Join(dir, "run"), "--progress", "none")
		cmd.Env = envWithout("TORUS_CLUSTER_KEY")
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if errs[i] = cmd.Wait(); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Errorf("torus launch on host %s: %v\n%s", h.addrs[i], errs[i], outs[i].String())
			continue
		}
		if s := outs[i].String(); !strings.Contains(s, "streams: mutual TLS 1.3 with the site's certificates") {
			t.Errorf("host %s does not say its streams are TLS with the site's certificates:\n%s", h.addrs[i], s)
		}
	}
	if s := outs[0].String(); !strings.Contains(s, "ring 10.77.0.1:") {
		t.Errorf("node 0's ring is not on the hosts' addresses:\n%s", s)
	}
}
