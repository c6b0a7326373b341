package parallel

import (
	"crypto"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// Mutual TLS on the ring's streams. When GRPCConfig.TLS is set, every gRPC
// connection between two ranks is TLS 1.3, and each side proves itself with a
// certificate that chains to the job's CA: the server requires and verifies
// the client's (tls.RequireAndVerifyClientCert), the client verifies the
// server's. Addresses vary from job to job, so names are not checked: the
// chain to the CA is the whole proof (every leaf made here also carries the
// name TLSServerName, for tools that want one).
//
// The CA comes from one of two places:
//
//   - DeriveTLS: the job's cluster secret. Every rank derives the same CA key
//     from it (HKDF-SHA256, an Ed25519 key) and so the same CA certificate,
//     and signs itself a fresh leaf with a fresh key at start. Nothing but
//     the secret has to be shared.
//   - LoadTLS: a site's own PKI, a certificate and key per worker and the CA
//     (or CAs) they chain to, in PEM files.
//
// A connection that fails the TLS handshake is refused before gRPC reads a
// byte of it, and the refusal is logged on both sides in the style of the
// cluster token's (grpc_auth.go): the side that rejected a certificate, or got
// no TLS at all, logs "parallel: refused a stream"; the side that was
// rejected logs "parallel: refused by a peer". A rank that is refused while
// connecting gives up at once (NewGRPC fails naming the peer); a rank that
// refuses a stranger goes on waiting for its real peers.

// TLSServerName is the DNS name in every leaf DeriveTLS makes.
const TLSServerName = "torus-worker"

// TLSIdentity is one rank's part in the job's mutual TLS: the certificate it
// presents to every peer and the CAs its peers' certificates must chain to.
type TLSIdentity struct {
	Cert tls.Certificate // this rank's leaf, and any intermediates after it
	CAs  *x509.CertPool  // the job's CA (or CAs)
	// What holds the identity, for messages: "the CA derived from the cluster
	// secret (CA 1a2b3c4d)" or "--tls-ca ca.pem".
	Source string
}

// Validity of the certificates DeriveTLS makes. The CA's dates are fixed, so
// that every rank makes the very same certificate; a leaf's start a day
// back, so that a node whose clock is behind still accepts it.
var (
	derivedCANotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	derivedCANotAfter  = time.Date(2125, 1, 1, 0, 0, 0, 0, time.UTC)
)

const (
	leafBackdate = 24 * time.Hour
	leafLifetime = 366 * 24 * time.Hour
)

// DeriveTLS derives the job's CA from the cluster secret and issues this rank
// a fresh leaf certificate signed by it. Every rank with the same secret gets
// the same CA; a rank with another secret gets another CA, and its streams are
// refused.
func DeriveTLS(secret []byte) (*TLSIdentity, error) {
	if len(secret) == 0 {
		return nil, errors.New("parallel: TLS: the cluster secret is empty")
	}
	seed, err := hkdf.Key(sha256.New, secret, []byte("torus"), "torus tls ca v1", ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("parallel: TLS: derive the CA key: %w", err)
	}
	caKey := ed25519.NewKeyFromSeed(seed)
	caPub := caKey.Public().(ed25519.PublicKey)
	fp := sha256.Sum256(caPub)
	caName := pkix.Name{Organization: []string{"torus"}, CommonName: "torus cluster CA " + hex.EncodeToString(fp[:4])}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               caName,
		NotBefore:             derivedCANotBefore,
		NotAfter:              derivedCANotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caPub, caKey)
	if err != nil {
		return nil, fmt.Errorf("parallel: TLS: make the CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parallel: TLS: the CA certificate: %w", err)
	}
	cert, err := issueLeaf(ca, caKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &TLSIdentity{Cert: cert, CAs: pool,
		Source: fmt.Sprintf("the CA derived from the cluster secret (%s)", caName.CommonName)}, nil
}

// issueLeaf makes a fresh key and a certificate for it signed by ca, good
// for both ends of a connection.
func issueLeaf(ca *x509.Certificate, caKey crypto.Signer) (tls.Certificate, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parallel: TLS: make a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parallel: TLS: make a serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"torus"}, CommonName: TLSServerName},
		DNSNames:     []string{TLSServerName},
		NotBefore:    now.Add(-leafBackdate),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parallel: TLS: sign this rank's certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parallel: TLS: this rank's certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// LoadTLS reads a site's own PKI: this worker's certificate (PEM, the leaf
// first, then any intermediates) and its private key, and the CA
// certificates (PEM) every worker's certificate chains to. The certificate
// must itself chain to those CAs, be valid now, and be usable both as a TLS
// server's and a client's (extended key usages serverAuth and clientAuth, or
// none).
func LoadTLS(certFile, keyFile, caFile string) (*TLSIdentity, error) {
	var missing []string
	for _, f := range [][2]string{{"--tls-cert", certFile}, {"--tls-key", keyFile}, {"--tls-ca", caFile}} {
		if f[1] == "" {
			missing = append(missing, f[0])
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("parallel: TLS: a site's certificates need --tls-cert, --tls-key and --tls-ca together; missing %v", missing)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("parallel: TLS: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	pemCAs, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("parallel: TLS: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCAs) {
		return nil, fmt.Errorf("parallel: TLS: CA file %s holds no PEM certificate", caFile)
	}
	id := &TLSIdentity{Cert: cert, CAs: pool, Source: "--tls-ca " + caFile}
	leaf := cert.Leaf // set by LoadX509KeyPair
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parallel: TLS: certificate %s: %w", certFile, err)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := id.verify(leaf, cert.Certificate[1:], usage); err != nil {
			return nil, fmt.Errorf("parallel: TLS: certificate %s does not do for a worker: %w", certFile, err)
		}
	}
	return id, nil
}

// verify checks leaf's chain (with the intermediates given, DER) against the
// job's CAs, for the given use; names are not checked.
func (id *TLSIdentity) verify(leaf *x509.Certificate, intermediates [][]byte, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, der := range intermediates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("intermediate certificate: %w", err)
		}
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: id.CAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// serverConfig is the TLS of a rank's server: TLS 1.3, its certificate, and
// every client's verified against the job's CAs.
func (id *TLSIdentity) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    id.CAs,
	}
}

// clientConfig is the TLS of a rank's connection to a peer: TLS 1.3, its
// certificate whatever CAs the server asks for (so that a server of another
// job says why it refuses it), and the server's chain verified against the
// job's CAs, its name not (crypto/tls would check the name against the
// address dialled, which differs from job to job).
func (id *TLSIdentity) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &id.Cert, nil
		},
		ServerName:         TLSServerName,
		InsecureSkipVerify: true, // the chain is verified below, by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the server sent no certificate")
			}
			var inter [][]byte
			for _, c := range cs.PeerCertificates[1:] {
				inter = append(inter, c.Raw)
			}
			if err := id.verify(cs.PeerCertificates[0], inter, x509.ExtKeyUsageServerAuth); err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
			}
			return nil
		},
	}
}

// IsLoopback says whether addr (HOST:PORT, or a bare host) is a loopback
// address: an IP in 127.0.0.0/8 or ::1, or "localhost". Names are not
// resolved.
func IsLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
