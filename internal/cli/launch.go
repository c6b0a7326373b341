package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/torusml/torus/launch"
)

func newLaunchCmd() *cobra.Command {
	var (
		sets        []string
		out         string
		progress    string
		o           = launch.Overrides{NodeRank: -1}
		bind        string
		keyFile     string
		secf        securityFlags
		joinWait    time.Duration
		resume      string
		maxRestarts int
	)
	cmd := &cobra.Command{
		Use:   "launch RECIPE.yaml --nodes N --node-rank I --workers-per-node K --rdzv HOST:PORT",
		Short: "Train across machines: start this node's workers, which meet the others' through memberlist",
		Long: `Run once on every node. Each node starts its workers; they join a memberlist
cluster seeded at the rendezvous address (served by the worker of rank 0, so
--rdzv must name node 0), wait for the whole world, order the ring by rank and
open gRPC streams to their neighbours. Under srun, a Kubernetes indexed Job or
torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
MASTER_ADDR, MASTER_PORT) the placement is read from the environment; flags
override it. Every stream is mutual TLS 1.3: set the cluster secret
(TORUS_CLUSTER_KEY or --key-file, the same on every node), from which each
worker derives the job's CA, or give a site's certificates (--tls-cert,
--tls-key, --tls-ca); --insecure runs plaintext, on loopback only. See
docs/launch.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := launch.ParsePlacement(os.Getenv, o)
			if err != nil {
				return err
			}
			r, err := loadRecipe(args[0], sets, progress)
			if err != nil {
				return err
			}
			if p.World() != r.Parallel.Workers {
				return fmt.Errorf("launch: %d nodes x %d workers per node = %d workers, but the recipe has parallel.workers %d (set it with --set parallel.workers=%d)",
					p.Nodes, p.WorkersPerNode, p.World(), r.Parallel.Workers, p.World())
			}
			if out == "" {
				out = filepath.Join("runs", r.Name+"-"+p.JobID)
			}
			sec, err := secf.security(keyFile)
			if err != nil {
				return fmt.Errorf("launch: %w", err)
			}
			if err := sec.Check(p.Rdzv, bind); err != nil {
				return fmt.Errorf("launch: %w", err)
			}
			if _, err := sec.TLS(); err != nil { // a bad certificate file fails here, not in every worker
				return fmt.Errorf("launch: %w", err)
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("launch: find this executable: %w", err)
			}
			w := cmd.ErrOrStderr()
			fmt.Fprintf(w, "torus: launch (%s): job %s, node %d of %d, ranks %v of %d, rendezvous %s, run directory %s\n",
				p.Source, p.JobID, p.NodeRank, p.Nodes, p.Ranks, p.World(), p.Rdzv, out)
			fmt.Fprintf(w, "torus: streams: %s\n", sec.Describe())
			if sec.Secret == nil && !sec.Insecure {
				fmt.Fprintf(w, "torus: warning: no cluster secret (%s or --key-file): gossip is neither encrypted nor authenticated, so a stranger can disturb the membership (not open a stream)\n", launch.SecretEnv)
			}
			if maxRestarts < 0 {
				maxRestarts = r.Launch.MaxRestarts
			}
			for attempt := 0; ; attempt++ {
				resumeFrom := resume
				if attempt > 0 {
					resumeFrom = "auto" // the latest complete checkpoint, or a fresh start if none
				}
				err := launch.RunLocal(cmd.Context(), launch.LocalConfig{
					Workers:        len(p.Ranks),
					Ranks:          p.Ranks,
					Backend:        r.Backend, // a GPU each (CUDA_VISIBLE_DEVICES) unless cpu
					SelfRendezvous: true,
					Stderr:         w,
					Command: func(rank int) (string, []string) {
						a := []string{"worker", args[0], "--rank", strconv.Itoa(rank), "--world", strconv.Itoa(p.World()),
							"--out", out, "--progress", r.Log.Progress, "--rdzv", p.Rdzv, "--job", p.JobID,
							"--node", strconv.Itoa(p.NodeRank), "--attempt", strconv.Itoa(attempt)}
						if resumeFrom != "" {
							a = append(a, "--resume", resumeFrom)
						}
						if keyFile != "" { // TORUS_CLUSTER_KEY reaches the workers through their environment
							a = append(a, "--key-file", keyFile)
						}
						a = append(a, securityArgs(sec)...)
						if joinWait != 0 {
							a = append(a, "--join-timeout", joinWait.String())
						}
						if bind != "" {
							a = append(a, "--gossip-bind", bind, "--listen", bind+":0")
						}
						for _, s := range sets {
							a = append(a, "--set", s)
						}
						return self, a
					},
					OnStart: func(rank, pid int) { fmt.Fprintf(w, "torus: worker rank %d pid %d\n", rank, pid) },
				})
				var we *launch.WorkerError
				switch {
				case err == nil:
					return nil
				case cmd.Context().Err() != nil || !errors.As(err, &we):
					return fmt.Errorf("launch: node %d: %w", p.NodeRank, err)
				case attempt >= maxRestarts:
					return fmt.Errorf("launch: node %d: %w (after %d restarts, launch.max_restarts %d)", p.NodeRank, err, attempt, maxRestarts)
				}
				// Every node's workers fail when one does (their streams to it break,
				// or memberlist declares it dead), so every node restarts once.
				fmt.Fprintf(w, "torus: launch: node %d: %v; restart %d of %d from the latest checkpoint\n", p.NodeRank, err, attempt+1, maxRestarts)
			}
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Nodes, "nodes", 0, "node count (default: from Slurm, Kubernetes or torchrun variables)")
	f.IntVar(&o.NodeRank, "node-rank", -1, "this node's rank in [0, nodes) (default: from the environment)")
	f.IntVar(&o.WorkersPerNode, "workers-per-node", 0, "workers this node starts (default 1, or from the environment)")
	f.StringVar(&o.Rdzv, "rdzv", "", "HOST:PORT of the rendezvous on node 0 (default: from the environment, port 29400)")
	f.StringVar(&o.JobID, "job-id", "", "job id: only members of one job join each other (default: the scheduler's, or torus)")
	f.StringVar(&bind, "bind", "", "IP address the workers listen on, gossip and gRPC (default: the address of the route to the rendezvous host)")
	f.IntVar(&maxRestarts, "max-restarts", -1, "how many times a failed job is restarted from its latest checkpoint (default: the recipe's launch.max_restarts, 3)")
	f.StringVar(&resume, "resume", "", "continue a run, as torus train --resume: auto, RUN_DIR or RUN_DIR/ckpt/step-N (rank 0 decides; every node must see the run directory)")
	f.StringVar(&keyFile, "key-file", "", "file holding the cluster secret (default: $TORUS_CLUSTER_KEY); every node must have the same one. It encrypts gossip and makes the job's TLS CA")
	secf.add(f)
	f.DurationVar(&joinWait, "join-timeout", 0, "how long a worker waits for the rendezvous and the whole world (default 5m)")
	f.StringArrayVar(&sets, "set", nil, "override a recipe key: --set optim.lr=3e-4 (repeatable)")
	f.StringVar(&out, "out", "", "run directory, written by rank 0 (default runs/NAME-JOBID)")
	f.StringVar(&progress, "progress", "", "progress display: auto|bar|plain|none (default: the recipe's log.progress)")
	return cmd
}

// rdzvFlags are a worker's membership flags (set by torus launch).
type rdzvFlags struct {
	addr, job, bind, keyFile string
	node, attempt            int
	resume                   string
	joinTimeout              time.Duration
}

// securityFlags are the TLS flags of torus launch and torus worker.
type securityFlags struct {
	cert, key, ca string
	insecure      bool
}

func (s *securityFlags) add(f *pflag.FlagSet) {
	f.StringVar(&s.cert, "tls-cert", "", "this node's TLS certificate (PEM, leaf first), from a site's own PKI instead of the CA derived from the cluster secret; with --tls-key and --tls-ca")
	f.StringVar(&s.key, "tls-key", "", "the private key (PEM) of --tls-cert")
	f.StringVar(&s.ca, "tls-ca", "", "the CA certificates (PEM) every worker's certificate must chain to")
	f.BoolVar(&s.insecure, "insecure", false, "plaintext gRPC streams and gossip, no cluster secret: only when every address is loopback")
}

// security is the job's Security: the cluster secret (keyFile, else
// $TORUS_CLUSTER_KEY) and the flags.
func (s *securityFlags) security(keyFile string) (launch.Security, error) {
	secret, err := clusterSecret(keyFile)
	if err != nil {
		return launch.Security{}, err
	}
	sec := launch.Security{Secret: secret, TLSCert: s.cert, TLSKey: s.key, TLSCA: s.ca, Insecure: s.insecure}
	for _, f := range []*string{&sec.TLSCert, &sec.TLSKey, &sec.TLSCA} {
		if *f != "" { // the workers may not start where this process does
			if abs, err := filepath.Abs(*f); err == nil {
				*f = abs
			}
		}
	}
	return sec, nil
}

// securityArgs are the flags that pass sec's TLS files (absolute paths) and
// --insecure on to a worker; the secret goes by --key-file or the environment.
func securityArgs(sec launch.Security) []string {
	var a []string
	for _, f := range [][2]string{{"--tls-cert", sec.TLSCert}, {"--tls-key", sec.TLSKey}, {"--tls-ca", sec.TLSCA}} {
		if f[1] != "" {
			a = append(a, f[0], f[1])
		}
	}
	if sec.Insecure {
		a = append(a, "--insecure")
	}
	return a
}

// clusterSecret reads the cluster secret from keyFile, else from
// TORUS_CLUSTER_KEY; nil when neither is set.
func clusterSecret(keyFile string) ([]byte, error) {
	if keyFile == "" {
		if v := os.Getenv(launch.SecretEnv); v != "" {
			return []byte(v), nil
		}
		return nil, nil
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return nil, fmt.Errorf("cluster secret: --key-file %s is empty", keyFile)
	}
	return b, nil
}
