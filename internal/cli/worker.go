package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/launch"
	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/recipe"
	"github.com/torusml/torus/trainer"
)

// launchLocal runs a parallel.workers > 1 recipe as that many `torus worker`
// processes on loopback and waits for them.
func launchLocal(ctx context.Context, w io.Writer, recipePath string, sets []string, out, from, metricsAddr string, r recipe.Recipe) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("launch: find this executable: %w", err)
	}
	mesh, err := r.Topology().Mesh()
	if err != nil {
		return err
	}
	n := mesh.World
	// A fresh secret for this run, in the workers' environment (never on their
	// command line): their streams are mutual TLS with a CA of this run only.
	secret, err := launch.NewSecret()
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	fmt.Fprintf(w, "torus: starting %d workers on this machine (%s, sp %d, dp %d)\n", n, r.Parallel.Strategy, mesh.SP, mesh.DP)
	// A stop signal is passed on: the workers agree on a step, rank 0 writes
	// its checkpoint, and each exits 128+N.
	stop := make(chan syscall.Signal, 2)
	onStopSignals(ctx, func(sig syscall.Signal) { stop <- sig }, true)
	err = launch.RunLocal(ctx, launch.LocalConfig{
		Workers: n,
		Stop:    stop,
		Env:     []string{launch.SecretEnv + "=" + secret},
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
			if metricsAddr != "" && rank == 0 { // rank 0's figures: one port on this machine
				args = append(args, "--metrics-addr", metricsAddr)
			}
			return self, args
		},
		OnStart: func(rank, pid int) { fmt.Fprintf(w, "torus: worker rank %d pid %d\n", rank, pid) },
	})
	var sig *launch.SignalledError
	if errors.As(err, &sig) {
		return &signalStop{sig: sig.Signal, msg: fmt.Sprintf("train: stopped on %s: every worker stopped after the same step (rank 0 says above what it saved)", signalName(sig.Signal))}
	}
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
		metrics  string
		rdzv     rdzvFlags
		secf     securityFlags
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
			sec, err := secf.security(rdzv.keyFile)
			if err != nil {
				return fmt.Errorf("worker rank %d: %w", rank, err)
			}
			devices := []string{"cpu"}
			if v := os.Getenv("CUDA_VISIBLE_DEVICES"); v != "" {
				devices = strings.Split(v, ",")
			}
			c := launch.WorkerConfig{
				Rank: rank, Layout: r.Topology(), Listen: listen, Security: sec,
				Stdin: cmd.InOrStdin(), Stdout: cmd.OutOrStdout(),
				Rdzv: rdzv.addr, Job: rdzv.job, Node: rdzv.node, Attempt: rdzv.attempt, Bind: rdzv.bind,
				Devices: devices, JoinTimeout: rdzv.joinTimeout, From: from, Log: cmd.ErrOrStderr(),
			}
			if rdzv.resume != "" {
				c.Resume = func() (string, error) {
					from, _, restart, err := resolveResume(cmd.ErrOrStderr(), rdzv.resume, out)
					if err == nil && restart && rank == 0 { // rank 0 writes the run directory
						err = setMetricsAside(cmd.ErrOrStderr(), out)
					}
					return from, err
				}
			}
			wk, ctx, err := launch.JoinWorker(cmd.Context(), c)
			if err != nil {
				return err
			}
			defer wk.Close()
			exp, err := serveMetrics(cmd.ErrOrStderr(), metrics, rank)
			if err != nil {
				return fmt.Errorf("worker rank %d: %w", rank, err)
			}
			defer exp.Close()
			exp.SetRestarts(rdzv.attempt)
			d := &trainer.Dist{T: wk.T, Mesh: wk.Mesh, Strategy: r.Parallel.Strategy}
			// Hybrid sequence parallelism: Ulysses inside groups of u ranks, a ring across them.
			switch u := r.Topology().UlyssesDegree(wk.Mesh.SP); {
			case u >= wk.Mesh.SP && wk.Mesh.SP > 1:
				d.Strategy = "ulysses"
			case u <= 1:
				d.Strategy = "ring"
			default:
				d.Ulysses = u
			}
			if r.Parallel.Balance == "adaptive" {
				d.Balance = &parallel.Balancer{}
			}
			if err = train(ctx, cmd.ErrOrStderr(), r, out, wk.From, d, exp); err == nil {
				if err := wk.Finish(ctx); err != nil {
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
	cmd.Flags().StringVar(&metrics, "metrics-addr", "", "serve this worker's Prometheus metrics at http://HOST:PORT/metrics")
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve the other workers on (default 127.0.0.1:0, or with --rdzv the address of the route to it, port 0)")
	cmd.Flags().StringVar(&rdzv.addr, "rdzv", "", "HOST:PORT of the memberlist rendezvous (rank 0 serves it); without it the peers come from stdin (torus train)")
	cmd.Flags().StringVar(&rdzv.job, "job", "torus", "job id: only workers of one job join each other")
	cmd.Flags().IntVar(&rdzv.node, "node", 0, "this worker's node rank (carried in its membership metadata)")
	cmd.Flags().StringVar(&rdzv.keyFile, "key-file", "", "file holding the cluster secret (default: $TORUS_CLUSTER_KEY)")
	secf.add(cmd.Flags())
	cmd.Flags().IntVar(&rdzv.attempt, "attempt", 0, "the job's restart count: workers of one attempt meet only each other")
	cmd.Flags().StringVar(&rdzv.resume, "resume", "", "with --rdzv: what rank 0 resumes from (as torus train --resume: auto, RUN_DIR or a checkpoint); every rank takes rank 0's choice")
	cmd.Flags().DurationVar(&rdzv.joinTimeout, "join-timeout", 0, "how long to wait for the rendezvous and the whole world (default 5m)")
	cmd.Flags().StringVar(&rdzv.bind, "gossip-bind", "", "address gossip listens on (default the address of the route to --rdzv)")
	return cmd
}
