package main

import (
	"fmt"
	"io"
	"strings"
)

// command runs a subcommand given on the command line and returns the
// process exit code.
func command(args []string, stdout, stderr io.Writer) int {
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return 0
	case "check":
		return checkCommand(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "strangers %s\n", version)
		return 0
	}
	fmt.Fprintf(stderr, "strangers: unknown command %q (see strangers -h)\n", strings.Join(args, " "))
	return 2
}

// oneLine joins the lines of a (possibly joined) error with "; " so that a
// startup failure is one clear line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
