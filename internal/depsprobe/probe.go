package depsprobe

import (
	_ "github.com/google/uuid"
	_ "github.com/lib/pq"
	_ "github.com/segmentio/kafka-go"
	_ "github.com/temporalio/ui-server/v2/server"
	_ "github.com/twmb/franz-go/pkg/kfake"
	_ "go.temporal.io/sdk/client"
	_ "go.temporal.io/sdk/testsuite"
	_ "go.temporal.io/server/temporal"
	_ "go.temporal.io/server/temporaltest"
	_ "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	_ "go.temporal.io/server/tools/sql"
	_ "golang.org/x/sync/errgroup"
)
