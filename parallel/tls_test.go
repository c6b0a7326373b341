package parallel_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/torusml/torus/parallel"
)

// TestDeriveTLS: ranks with one cluster secret derive one CA, so each accepts
// the other's fresh certificate; a rank with another secret has another CA.
func TestDeriveTLS(t *testing.T) {
	a, b := testTLS(t, "one secret"), testTLS(t, "one secret")
	if a.Cert.Leaf.SerialNumber.Cmp(b.Cert.Leaf.SerialNumber) == 0 {
		t.Errorf("two ranks got the same certificate: each must issue its own")
	}
	for _, tc := range []struct {
		name   string
		cert   *parallel.TLSIdentity
		pool   *parallel.TLSIdentity
		accept bool
	}{
		{"same secret, a's by b", a, b, true},
		{"same secret, b's by a", b, a, true},
		{"another secret", testTLS(t, "another secret"), a, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				_, err := tc.cert.Cert.Leaf.Verify(x509.VerifyOptions{Roots: tc.pool.CAs, KeyUsages: []x509.ExtKeyUsage{usage}})
				if (err == nil) != tc.accept {
					t.Errorf("usage %v: verify: %v, want accepted %v", usage, err, tc.accept)
				}
			}
		})
	}
	if _, err := parallel.DeriveTLS(nil); err == nil || !strings.Contains(err.Error(), "secret is empty") {
		t.Errorf("DeriveTLS(nil): %v, want an error saying the secret is empty", err)
	}
}

// sitePKI writes a site's CA and, signed by it, a certificate for each of the
// given extended key usages (nil: both a server's and a client's), in PEM
// files under dir; it returns the CA file and the certificate and key files.
type pkiFiles struct{ ca, cert, key string }

func sitePKI(t *testing.T, dir, name string, usages ...[]x509.ExtKeyUsage) []pkiFiles {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write(name+"-ca.pem", "CERTIFICATE", caDER)
	var out []pkiFiles
	for i, usage := range usages {
		if usage == nil {
			usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: "node"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pkiFiles{ca: caFile, cert: write(name+"-"+string(rune('a'+i))+".pem", "CERTIFICATE", der),
			key: write(name+"-"+string(rune('a'+i))+"-key.pem", "PRIVATE KEY", keyDER)})
	}
	return out
}

// TestLoadTLS: a site's certificate, key and CA load when they make a
// worker's identity, and are refused naming what is wrong otherwise.
func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	site := sitePKI(t, dir, "site", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	other := sitePKI(t, dir, "other", nil)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want          string // "" when it loads
	}{
		{"good", site[0].cert, site[0].key, site[0].ca, ""},
		{"no ca", site[0].cert, site[0].key, "", "missing [--tls-ca]"},
		{"nothing", "", "", "", "missing [--tls-cert --tls-key --tls-ca]"},
		{"key of another certificate", site[0].cert, other[0].key, site[0].ca, "does not match"},
		{"ca of another site", site[0].cert, site[0].key, other[0].ca, "does not do for a worker"},
		{"server only", site[1].cert, site[1].key, site[1].ca, "does not do for a worker"},
		{"ca not pem", site[0].cert, site[0].key, notPEM, "holds no PEM certificate"},
		{"ca missing", site[0].cert, site[0].key, filepath.Join(dir, "nope.pem"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := parallel.LoadTLS(tc.cert, tc.key, tc.ca)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("LoadTLS: %v", err)
			case tc.want == "" && id.CAs == nil:
				t.Fatalf("LoadTLS: no CAs")
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("LoadTLS: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestGRPCTLSRing: a ring over real gRPC computes with either kind of TLS
// identity (the conformance tests run over the derived one throughout).
func TestGRPCTLSRing(t *testing.T) {
	site := sitePKI(t, t.TempDir(), "site", nil, nil, nil)
	for _, tc := range []struct {
		name string
		id   func(rank int) *parallel.TLSIdentity
	}{
		{"derived from the cluster secret", func(int) *parallel.TLSIdentity { return testTLS(t, "ring secret") }},
		{"site certificates", func(rank int) *parallel.TLSIdentity {
			id, err := parallel.LoadTLS(site[rank].cert, site[rank].key, site[rank].ca)
			if err != nil {
				t.Fatal(err)
			}
			return id
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newGRPCJob(t, 3, func(c *parallel.GRPCConfig) { c.TLS = tc.id(c.Rank) })
			var all []parallel.Transport
			for _, g := range ts {
				all = append(all, g)
			}
			onEveryRank(t, all, func(ctx context.Context, tr parallel.Transport) error {
				next, prev := (tr.Rank()+1)%3, (tr.Rank()+2)%3
				if err := tr.Send(ctx, next, "ring", scalarI32(int32(10+tr.Rank()))); err != nil {
					return err
				}
				got, err := tr.Recv(ctx, prev, "ring")
				if err != nil {
					return err
				}
				if diff := sameTensor(got[0], scalarI32(int32(10+prev))); diff != "" {
					return errors.New("received " + diff)
				}
				return nil
			})
		})
	}
}

// logWatch is a log that a test can wait on, line by line, without sleeping.
type logWatch struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{} // closed and replaced at every write
}

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{})} }

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logWatch) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits until a line of the log holds every one of want, at most d.
func (l *logWatch) waitFor(d time.Duration, want ...string) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		l.mu.Lock()
		text, changed := l.b.String(), l.changed
		l.mu.Unlock()
		for _, line := range strings.Split(text, "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return true
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		}
	}
}

func (l *logWatch) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// TestGRPCTLSRefusesIntruders: in a job whose streams are mutual TLS, a client
// without a certificate of the job's CA (another job's rank, one with another
// CA's certificate, one without a certificate, one without TLS) cannot open a
// stream: the job's rank logs the refusal, so does the intruder where it is a
// rank, and the job goes on.
func TestGRPCTLSRefusesIntruders(t *testing.T) {
	logs := []*logWatch{newLogWatch(), newLogWatch()}
	ts := newGRPCJob(t, 2, func(c *parallel.GRPCConfig) { c.Logger = logs[c.Rank].logger() })
	target := ts[0].Addr()
	other := testTLS(t, "another job's secret")
	rawClient := func(creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Not WaitForReady: the stream fails as soon as the connection does.
		stream, err := conn.NewStream(ctx, &rawService.Streams[0], exchangeMethod)
		if err == nil {
			_ = stream.SendMsg(wf{kind: kHello, from: 1, size: 2}.encode())
			_ = stream.SendMsg(chunkF32(1, 0, 1, 0, f32Bytes(666)).encode())
			var ack []byte
			err = stream.RecvMsg(&ack)
		}
		return err
	}
	for _, tc := range []struct {
		name      string
		intrude   func(log *logWatch) error
		rank0Logs []string // what rank 0 logs
		selfLogs  []string // what the intruder logs, where it is a rank
		errSays   string   // what the intruder's error says (a raw client's depends on timing: broken pipe, or the alert)
	}{
		{
			name: "rank of another job",
			intrude: func(log *logWatch) error {
				lis := listen(t)
				tr, err := parallel.NewGRPC(context.Background(), parallel.GRPCConfig{Rank: 1,
					Addrs: []string{target, lis.Addr().String()}, Listener: lis, TLS: other,
					ConnectTimeout: 20 * time.Second, Logger: log.logger()})
				if err == nil {
					tr.Close()
				}
				return err
			},
			rank0Logs: []string{"refused by a peer", "bad certificate"},
			selfLogs:  []string{"refused a stream", "unknown authority"},
			errSays:   "refused the certificate of rank 0",
		},
		{
			name: "rank trusting the job's CA, its certificate another's",
			intrude: func(log *logWatch) error {
				lis := listen(t)
				id := &parallel.TLSIdentity{Cert: other.Cert, CAs: testTLS(t, testSecret).CAs}
				tr, err := parallel.NewGRPC(context.Background(), parallel.GRPCConfig{Rank: 1,
					Addrs: []string{target, lis.Addr().String()}, Listener: lis, TLS: id,
					ConnectTimeout: 20 * time.Second, Logger: log.logger()})
				if err == nil {
					tr.Close()
				}
				return err
			},
			rank0Logs: []string{"refused a stream", "unknown authority"},
			selfLogs:  []string{"refused by a peer", "unknown certificate authority"},
			errSays:   "rank 0 at " + target + " refused this rank's certificate",
		},
		{
			name: "certificate of another CA",
			intrude: func(*logWatch) error {
				return rawClient(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true,
					GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &other.Cert, nil }}))
			},
			rank0Logs: []string{"refused a stream", "unknown authority"},
		},
		{
			name: "no certificate",
			intrude: func(*logWatch) error {
				return rawClient(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}))
			},
			rank0Logs: []string{"refused a stream", "certificate"},
		},
		{
			name:      "no TLS",
			intrude:   func(*logWatch) error { return rawClient(insecure.NewCredentials()) },
			rank0Logs: []string{"refused a stream", "does not look like a TLS handshake"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			self := newLogWatch()
			err := tc.intrude(self)
			if err == nil {
				t.Fatal("the intruder opened a stream")
			}
			if !strings.Contains(err.Error(), tc.errSays) {
				t.Errorf("the intruder's error %q does not say %q", err, tc.errSays)
			}
			if !logs[0].waitFor(10*time.Second, tc.rank0Logs...) {
				t.Errorf("rank 0 did not log %q:\n%s", tc.rank0Logs, logs[0])
			}
			if tc.selfLogs != nil && !self.waitFor(10*time.Second, tc.selfLogs...) {
				t.Errorf("the intruder did not log %q:\n%s", tc.selfLogs, self)
			}
			// The job is unharmed, and what rank 0 receives from rank 1 is rank 1's.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := ts[1].Send(ctx, 0, "t", scalarI32(7)); err != nil {
				t.Fatal(err)
			}
			got, err := ts[0].Recv(ctx, 1, "t")
			if err != nil {
				t.Fatal(err)
			}
			if diff := sameTensor(got[0], scalarI32(7)); diff != "" {
				t.Errorf("rank 0 received %s", diff)
			}
		})
	}
}

// TestGRPCPlaintextOnlyOnLoopback: without TLS, a job whose addresses are not
// all loopback is refused before anything is dialled.
func TestGRPCPlaintextOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:1", true},
		{"127.1.2.3:1", true},
		{"[::1]:1", true},
		{"localhost:1", true},
		{"10.0.0.1:1", false},
		{"[fe80::1]:1", false},
		{"node7:1", false},
		{"0.0.0.0:1", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if got := parallel.IsLoopback(tc.addr); got != tc.ok {
				t.Errorf("IsLoopback(%q) = %v, want %v", tc.addr, got, tc.ok)
			}
			if tc.ok {
				return
			}
			lis := listen(t)
			_, err := parallel.NewGRPC(context.Background(), parallel.GRPCConfig{Rank: 0,
				Addrs: []string{lis.Addr().String(), tc.addr}, Listener: lis})
			if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
				t.Errorf("plaintext to %s: %v, want an error saying it is not a loopback address", tc.addr, err)
			}
		})
	}
}
