package testsupport

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// TrustCA makes a Chromium whose HOME is home trust the CA certificate in
// caFile (PEM) for TLS servers: Chromium on Linux trusts what
// $HOME/.pki/nssdb trusts. It needs certutil (Debian package
// libnss3-tools).
func TrustCA(ctx context.Context, home, caFile string) error {
	dir := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("testsupport: NSS database: %w", err)
	}
	db := "sql:" + dir
	for _, args := range [][]string{
		{"-N", "-d", db, "--empty-password"},
		{"-A", "-d", db, "-n", "strangers test CA", "-t", "C,,", "-i", caFile},
	} {
		if out, err := exec.CommandContext(ctx, "certutil", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("testsupport: certutil %v: %w: %s", args, err, bytes.TrimSpace(out))
		}
	}
	return nil
}
