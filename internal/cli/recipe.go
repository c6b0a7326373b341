package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/recipe"
)

func newRecipeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "recipe", Short: "Work with recipes"}
	var sets []string
	check := &cobra.Command{
		Use:   "check RECIPE.yaml",
		Short: "Validate a recipe and print it fully resolved, defaults filled in",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := recipe.Load(args[0], sets)
			if err != nil {
				return recipeError(args[0], err)
			}
			warnRecipe(cmd.ErrOrStderr(), r.Cap())
			y, err := r.AnnotatedYAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(y)
			return err
		},
	}
	check.Flags().StringArrayVar(&sets, "set", nil, "override a key: --set optim.lr=3e-4 (repeatable)")
	cmd.AddCommand(check)
	return cmd
}

// recipeWarnings is where loadRecipe writes a recipe's warnings: Main's
// stderr (nothing for a worker, whose parent has shown them).
var recipeWarnings io.Writer = os.Stderr

// loadRecipe loads a recipe with its --set overrides and the --progress flag,
// brings into range what is capped rather than refused (recipe.Cap), and
// writes a warning for each such value to recipeWarnings.
func loadRecipe(path string, sets []string, progress string) (recipe.Recipe, error) {
	r, err := recipe.Load(path, sets)
	if err != nil {
		return r, recipeError(path, err)
	}
	warnRecipe(recipeWarnings, r.Cap())
	if progress != "" {
		r.Log.Progress = progress
	}
	return r, nil
}

// warnRecipe writes one line per warning: "torus: warning: WHERE: KEY: WHAT".
func warnRecipe(w io.Writer, warns recipe.Problems) {
	for _, p := range warns {
		fmt.Fprintf(w, "torus: warning: %s\n", p)
	}
}

// recipeError puts a recipe's problems under one heading, one per line.
func recipeError(path string, err error) error {
	if ps, ok := err.(recipe.Problems); ok && len(ps) > 1 {
		return &multiline{head: "recipe " + path + " has " + strconv.Itoa(len(ps)) + " problems:", body: ps.Error()}
	}
	return err
}

type multiline struct{ head, body string }

func (m *multiline) Error() string { return m.head + "\n" + indent(m.body) }
