package initd

import (
	"os"
	"testing"

	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

func TestMain(m *testing.M) {
	nstest.LockMainThread()
	os.Exit(m.Run())
}
