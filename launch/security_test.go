package launch_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/torusml/torus/launch"
)

// site is a site's PKI in PEM files: a CA and n workers' certificates and keys.
type site struct {
	ca          string
	certs, keys []string
}

func sitePKI(t *testing.T, dir string, n int) site {
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
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := site{ca: write("ca.pem", "CERTIFICATE", caDER)}
	for i := range n {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: fmt.Sprintf("node%d.example", i)},
			DNSNames: []string{fmt.Sprintf("node%d.example", i)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		s.certs = append(s.certs, write(fmt.Sprintf("node%d.pem", i), "CERTIFICATE", der))
		s.keys = append(s.keys, write(fmt.Sprintf("node%d-key.pem", i), "PRIVATE KEY", keyDER))
	}
	return s
}

// TestSecurityCheck: a job is secured by a cluster secret or a site's
// certificates, or, on loopback only, runs plaintext with --insecure; every
// other combination is refused saying how to fix it.
func TestSecurityCheck(t *testing.T) {
	secret := []byte("s3cret")
	for _, tc := range []struct {
		name  string
		sec   launch.Security
		addrs []string
		want  string // "" when it is fine
	}{
		{"secret", launch.Security{Secret: secret}, []string{"10.0.0.1:29400"}, ""},
		{"site", launch.Security{TLSCert: "c", TLSKey: "k", TLSCA: "ca"}, []string{"10.0.0.1:29400"}, ""},
		{"site and secret", launch.Security{Secret: secret, TLSCert: "c", TLSKey: "k", TLSCA: "ca"}, nil, ""},
		{"insecure on loopback", launch.Security{Insecure: true}, []string{"127.0.0.1:29400", "localhost", "[::1]:0", ""}, ""},
		{"nothing", launch.Security{}, []string{"127.0.0.1:29400"}, "no cluster secret: set TORUS_CLUSTER_KEY or --key-file"},
		{"insecure elsewhere", launch.Security{Insecure: true}, []string{"127.0.0.1:1", "10.0.0.1:29400"}, "--insecure: 10.0.0.1:29400 is not a loopback address"},
		{"insecure and secret", launch.Security{Insecure: true, Secret: secret}, nil, "choose one"},
		{"insecure and site", launch.Security{Insecure: true, TLSCA: "ca"}, nil, "choose one"},
		{"site without key", launch.Security{TLSCert: "c", TLSCA: "ca"}, nil, "missing [--tls-key]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sec.Check(tc.addrs...)
			if tc.want == "" && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Check: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if err := (launch.Security{}).Check(); !errors.Is(err, launch.ErrNoSecret) {
		t.Errorf("no secret: %v, want ErrNoSecret", err)
	}
}

// TestNewSecret: each run gets its own secret.
func TestNewSecret(t *testing.T) {
	a, err1 := launch.NewSecret()
	b, err2 := launch.NewSecret()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if a == b || len(a) != 64 {
		t.Errorf("secrets %q and %q: want two different ones of 64 hex digits", a, b)
	}
}
