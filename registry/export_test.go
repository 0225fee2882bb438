package registry

import "github.com/google/uuid"

// SuppressionCursor encodes the cursor of an entry at a position of the
// caller's choosing, for tests that play a cursor of another server.
func SuppressionCursor(xid uint64, requestID, idType, digest string) string {
	return suppressionCursor{xid: xid, request: uuid.MustParse(requestID), idType: idType, digest: digest}.encode()
}

// MigrateTo applies the embedded migrations up to version last, for tests
// that upgrade a database an older release left.
var MigrateTo = migrateTo
