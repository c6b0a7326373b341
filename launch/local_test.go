package launch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/torusml/torus/launch"
)

// sh returns a Command running script with $R set to the rank.
func sh(script func(rank int) string) func(int) (string, []string) {
	return func(rank int) (string, []string) {
		return "sh", []string{"-c", fmt.Sprintf("R=%d; %s", rank, script(rank))}
	}
}

const listenAndRead = `echo "TORUS-LISTEN 127.0.0.1:$((7000+R))"; read line; `

func TestRunLocal(t *testing.T) {
	cases := []struct {
		name     string
		script   func(rank int) string
		wantRank int // -1: success
		wantMsg  string
	}{
		{"all succeed", func(int) string {
			return listenAndRead + `echo "$line" | grep -q '"addrs":\["127.0.0.1:7000","127.0.0.1:7001","127.0.0.1:7002"\]' && echo "rank $R ok" >&2`
		}, -1, ""},
		{"one fails, the others are stopped", func(r int) string {
			if r == 1 {
				return listenAndRead + `exit 3`
			}
			return listenAndRead + `sleep 60`
		}, 1, "exited with status 3"},
		{"the others exit on their own before being stopped", func(r int) string {
			if r == 1 {
				return listenAndRead + `exit 3`
			}
			// A worker that notices the loss a moment later and says so, unless signalled first.
			return listenAndRead + `trap 'echo "rank $R was stopped" >&2; exit 9' TERM; sleep 0.3; echo "rank $R lost rank 1" >&2; exit 1`
		}, 1, "exited with status 3"},
		{"one dies before listening", func(r int) string {
			if r == 2 {
				return `exit 5`
			}
			return listenAndRead + `sleep 60`
		}, 2, "exited before listening"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			start := time.Now()
			err := launch.RunLocal(context.Background(), launch.LocalConfig{
				Workers: 3, Command: sh(tc.script), Stderr: &out, Grace: time.Second,
			})
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("took %s: the others were not stopped", took)
			}
			if tc.wantRank < 0 {
				if err != nil {
					t.Fatalf("%v\n%s", err, out.String())
				}
				if !strings.Contains(out.String(), "[rank 1] rank 1 ok") {
					t.Errorf("rank 1's stderr is not prefixed: %q", out.String())
				}
				return
			}
			var we *launch.WorkerError
			if !errors.As(err, &we) || we.Rank != tc.wantRank || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("got %v, want rank %d: %s", err, tc.wantRank, tc.wantMsg)
			}
			if strings.Contains(tc.name, "on their own") && (strings.Contains(out.String(), "was stopped") ||
				!strings.Contains(out.String(), "[rank 2] rank 2 lost rank 1")) {
				t.Errorf("the others were stopped before they could say what they saw:\n%s", out.String())
			}
		})
	}
}

func TestRunLocalCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- launch.RunLocal(ctx, launch.LocalConfig{Workers: 2, Command: sh(func(int) string { return listenAndRead + "sleep 60" }),
			Stderr: &bytes.Buffer{}, Grace: time.Second})
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("RunLocal did not return after cancel")
	}
}
