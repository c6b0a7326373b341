package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/launch"
	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/recipe"
	"github.com/torusml/torus/trainer"
)

// launchLocal runs a parallel.workers > 1 recipe as that many `torus worker`
// processes on loopback and waits for them.
func launchLocal(ctx context.Context, w io.Writer, recipePath string, sets []string, out, from string, r recipe.Recipe) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("launch: find this executable: %w", err)
	}
	n := r.Parallel.Workers
	fmt.Fprintf(w, "torus: starting %d workers on this machine (%s, sp %d, dp %d)\n", n, r.Parallel.Strategy, n/r.Parallel.DP, r.Parallel.DP)
	err = launch.RunLocal(ctx, launch.LocalConfig{
		Workers: n,
		Backend: r.Backend, // a GPU each (CUDA_VISIBLE_DEVICES) unless cpu
		Stderr:  w,
		Command: func(rank int) (string, []string) {
			args := []string{"worker", recipePath, "--rank", strconv.Itoa(rank), "--world", strconv.Itoa(n), "--out", out, "--progress", r.Log.Progress}
			for _, s := range sets {
				args = append(args, "--set", s)
			}
			if from != "" { // resolved here, so every rank loads the same one
				args = append(args, "--resume-from", from)
			}
			return self, args
		},
		OnStart: func(rank, pid int) { fmt.Fprintf(w, "torus: worker rank %d pid %d\n", rank, pid) },
	})
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

func newWorkerCmd() *cobra.Command {
	var (
		sets     []string
		out      string
		progress string
		rank     int
		world    int
		listen   string
		from     string
		rdzv     rdzvFlags
	)
	cmd := &cobra.Command{
		Use:    "worker RECIPE.yaml --rank R --world N",
		Short:  "One worker process of a job (what torus train and torus launch start)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := loadRecipe(args[0], sets, progress)
			if err != nil {
				return err
			}
			if world != r.Parallel.Workers {
				return fmt.Errorf("worker: --world %d but the recipe has parallel.workers %d", world, r.Parallel.Workers)
			}
			if rank < 0 || rank >= world {
				return fmt.Errorf("worker: --rank %d outside [0, %d)", rank, world)
			}
			if listen == "" {
				listen = "127.0.0.1:0"
				if rdzv.addr != "" { // the interface of the route to the rendezvous, not every one
					ip, err := launch.RouteIP(rdzv.addr)
					if err != nil {
						return fmt.Errorf("worker rank %d: %w", rank, err)
					}
					listen = net.JoinHostPort(ip, "0")
				}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("worker rank %d: listen on %s: %w", rank, listen, err)
			}
			secret, err := clusterSecret(rdzv.keyFile)
			if err != nil {
				ln.Close()
				return fmt.Errorf("worker rank %d: %w", rank, err)
			}
			var gossipKey []byte
			var token string
			if secret != nil {
				gossipKey, token = launch.ClusterKeys(secret)
			}
			ctx, cancel := context.WithCancelCause(cmd.Context())
			defer cancel(nil)
			var addrs []string
			var cl *workerCluster
			if rdzv.addr == "" { // started by torus train: the launcher hands out the addresses
				fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", launch.ListenPrefix, ln.Addr())
				peers, err := readPeers(cmd.InOrStdin(), world)
				if err != nil {
					ln.Close()
					return fmt.Errorf("worker rank %d: %w", rank, err)
				}
				addrs = peers.Addrs
			} else {
				if rank == 0 && rdzv.resume != "" { // rank 0 picks the checkpoint; the others take its choice
					if from, _, err = resolveResume(cmd.ErrOrStderr(), rdzv.resume, out); err != nil {
						ln.Close()
						return fmt.Errorf("worker rank %d: %w", rank, err)
					}
				}
				cl, err = joinCluster(ctx, cancel, rdzv, gossipKey, rank, world, ln.Addr().String(), from)
				if err != nil {
					ln.Close()
					return fmt.Errorf("worker rank %d: %w", rank, err)
				}
				defer cl.Close()
				addrs, from = cl.addrs, cl.resume
			}
			t, err := parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: rank, Addrs: addrs, Listener: ln, Token: token})
			if err != nil {
				return fmt.Errorf("worker rank %d: connect: %w", rank, err)
			}
			defer t.Close()
			sp := r.Parallel.SP
			if sp == 0 {
				sp = world / r.Parallel.DP
			}
			mesh, err := parallel.NewMesh(world, r.Parallel.DP, sp)
			if err != nil {
				return err
			}
			d := &trainer.Dist{T: t, Mesh: mesh, Strategy: r.Parallel.Strategy}
			if r.Parallel.Balance == "adaptive" {
				d.Balance = &parallel.Balancer{}
			}
			err = train(ctx, cmd.ErrOrStderr(), r, out, from, d)
			if err == nil && cl != nil {
				// Leave only once every rank is done: leaving earlier reads as a loss.
				if err := cl.Finish(ctx, 30*time.Minute); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "torus: worker rank %d: %v\n", rank, err)
				}
			}
			return err
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a recipe key (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "run directory (written by rank 0)")
	cmd.Flags().StringVar(&progress, "progress", "", "progress display: auto|bar|plain|none")
	cmd.Flags().IntVar(&rank, "rank", -1, "this worker's rank")
	cmd.Flags().IntVar(&world, "world", 0, "number of workers")
	cmd.Flags().StringVar(&from, "resume-from", "", "checkpoint folder to resume from")
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve the other workers on (default 127.0.0.1:0, or with --rdzv the address of the route to it, port 0)")
	cmd.Flags().StringVar(&rdzv.addr, "rdzv", "", "HOST:PORT of the memberlist rendezvous (rank 0 serves it); without it the peers come from stdin (torus train)")
	cmd.Flags().StringVar(&rdzv.job, "job", "torus", "job id: only workers of one job join each other")
	cmd.Flags().IntVar(&rdzv.node, "node", 0, "this worker's node rank (carried in its membership metadata)")
	cmd.Flags().StringVar(&rdzv.keyFile, "key-file", "", "file holding the cluster secret (default: $TORUS_CLUSTER_KEY)")
	cmd.Flags().IntVar(&rdzv.attempt, "attempt", 0, "the job's restart count: workers of one attempt meet only each other")
	cmd.Flags().StringVar(&rdzv.resume, "resume", "", "with --rdzv: what rank 0 resumes from (as torus train --resume: auto, RUN_DIR or a checkpoint); every rank takes rank 0's choice")
	cmd.Flags().DurationVar(&rdzv.joinTimeout, "join-timeout", 0, "how long to wait for the rendezvous and the whole world (default 5m)")
	cmd.Flags().StringVar(&rdzv.bind, "gossip-bind", "", "address gossip listens on (default the address of the route to --rdzv)")
	return cmd
}

// readPeers reads the launcher's line of addresses (see package launch).
func readPeers(in io.Reader, world int) (launch.Peers, error) {
	type result struct {
		p   launch.Peers
		err error
	}
	got := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadBytes('\n')
		if err != nil {
			got <- result{err: fmt.Errorf("read peer addresses from the launcher: %w", err)}
			return
		}
		var p launch.Peers
		if err := json.Unmarshal(line, &p); err != nil {
			got <- result{err: fmt.Errorf("peer addresses from the launcher: %w", err)}
			return
		}
		got <- result{p: p}
	}()
	select {
	case r := <-got:
		if r.err == nil && len(r.p.Addrs) != world {
			r.err = fmt.Errorf("launcher sent %d addresses for %d workers", len(r.p.Addrs), world)
		}
		return r.p, r.err
	case <-time.After(5 * time.Minute):
		return launch.Peers{}, fmt.Errorf("no peer addresses from the launcher within 5 minutes")
	}
}
