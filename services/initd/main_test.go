package initd

import (
	"testing"

	"github.com/pqbranch/pqbranch/services/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m, nil) }
