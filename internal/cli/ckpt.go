package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/safetensors"
	"github.com/torusml/torus/trainer"
)

func newCkptCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ckpt",
		Short: "List, inspect and verify checkpoints",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "ls RUN_DIR",
		Short: "The complete checkpoints of a run: step, tokens, size; the latest is marked",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ckptList(cmd.OutOrStdout(), ckptDirOf(args[0]))
		},
	}, &cobra.Command{
		Use:   "inspect CKPT",
		Short: "A checkpoint's manifest and tensor table (CKPT: a checkpoint folder, or a run directory for its latest)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := ckptPath(args[0])
			if err != nil {
				return err
			}
			return ckptInspect(cmd.OutOrStdout(), dir)
		},
	}, &cobra.Command{
		Use:   "verify CKPT",
		Short: "Check every file's size and checksum; exit 1 naming the first bad file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := ckptPath(args[0])
			if err != nil {
				return err
			}
			c, err := checkpoint.Open(dir)
			if err != nil {
				return err
			}
			if err := c.Verify(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: %d files, %s, every checksum holds\n", dir, len(c.Manifest.Files), bytesHuman(c.Bytes()))
			return nil
		},
	})
	return cmd
}

// ckptDirOf is RUN/ckpt for a run directory, or the argument if it is a ckpt folder.
func ckptDirOf(arg string) string {
	if _, err := os.Stat(filepath.Join(arg, checkpoint.LatestFile)); err == nil {
		return arg
	}
	return trainer.RunDir(arg).Ckpt()
}

// ckptPath is the checkpoint folder an argument names: itself if it holds a
// manifest, else the latest checkpoint of a run directory or ckpt folder.
func ckptPath(arg string) (string, error) {
	if _, err := os.Stat(filepath.Join(arg, checkpoint.ManifestFile)); err == nil {
		return arg, nil
	}
	if _, err := os.Stat(arg); err != nil {
		return "", err
	}
	return checkpoint.Latest(ckptDirOf(arg))
}

func ckptList(w io.Writer, dir string) error {
	infos, err := checkpoint.List(dir)
	if err != nil {
		return err
	}
	if len(infos) == 0 {
		return fmt.Errorf("no complete checkpoint in %s", dir)
	}
	latest, _ := checkpoint.Latest(dir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "checkpoint\tstep\ttokens\tsize\t\t")
	for _, in := range infos {
		mark := ""
		if latest != "" && filepath.Base(latest) == in.Name {
			mark = "latest"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t\n", in.Name, in.Step, in.TokensSeen, bytesHuman(in.Bytes), mark)
	}
	return tw.Flush()
}

func ckptInspect(w io.Writer, dir string) error {
	c, err := checkpoint.Open(dir)
	if err != nil {
		return err
	}
	m, err := json.MarshalIndent(c.Manifest, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n%s\n", dir, m)
	for _, f := range c.Manifest.Files {
		if !strings.HasSuffix(f.Path, ".safetensors") {
			continue
		}
		infos, meta, err := safetensors.Header(filepath.Join(dir, f.Path))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\n%s (%d tensors, metadata %v)\n", f.Path, len(infos), meta)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  name\tdtype\tshape\tbytes")
		for _, in := range infos {
			fmt.Fprintf(tw, "  %s\t%s\t%v\t%d\n", in.Name, in.DType, in.Shape, in.Bytes)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
