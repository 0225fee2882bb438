package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// The start-up checks of New. Each asks the database itself, so that a
// statement naming a table that does not exist, taking the wrong parameters
// or doing something other than its role fails the connector at start, in
// front of the operator, instead of failing every erasure later. They run
// with the parameter NULL and change nothing: EXPLAIN plans without
// executing, and reveal queries run in a READ ONLY transaction that is rolled
// back.

// checkErase verifies that stmt takes exactly $1 and that its plan is a
// DELETE or UPDATE whose every data-modifying part deletes or updates.
func checkErase(ctx context.Context, conn *sql.Conn, stmt string) error {
	if err := checkParams(ctx, conn, stmt); err != nil {
		return err
	}
	plan, err := explain(ctx, conn, stmt)
	if err != nil {
		return err
	}
	if plan.NodeType != "ModifyTable" || (plan.Operation != "Delete" && plan.Operation != "Update") {
		return errors.New("the statement is not a DELETE or UPDATE")
	}
	var bad error
	plan.walk(func(n planNode) {
		if bad == nil && n.NodeType == "ModifyTable" && n.Operation != "Delete" && n.Operation != "Update" {
			bad = fmt.Errorf("the statement contains %s; erase statements may only DELETE or UPDATE", strings.ToUpper(n.Operation))
		}
	})
	return bad
}

// checkEraseBatch verifies what checkErase does, and that the statement
// returns exactly one column, the value it matched. Finding that out takes
// running it, with an empty array, in a transaction rolled back: it
// matches no row and changes nothing.
func checkEraseBatch(ctx context.Context, conn *sql.Conn, stmt string) error {
	if err := checkErase(ctx, conn, stmt); err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, stmt, pq.Array([]string{}))
	if err != nil {
		return fmt.Errorf("the statement fails with an empty array as $1: %w", err)
	}
	cols, err := rows.Columns()
	if err == nil {
		err = rows.Close()
	}
	if err != nil {
		return fmt.Errorf("the statement fails with an empty array as $1: %w", err)
	}
	if len(cols) != 1 {
		return fmt.Errorf("the statement returns %d columns; it must return exactly one, the identifier's value (RETURNING …)", len(cols))
	}
	return nil
}

// checkReveal verifies that query takes exactly $1, that its plan modifies
// nothing, that it runs in a READ ONLY transaction (which also catches a
// function that writes) and that it returns exactly one column.
func checkReveal(ctx context.Context, conn *sql.Conn, query string) error {
	if err := checkParams(ctx, conn, query); err != nil {
		return err
	}
	plan, err := explain(ctx, conn, query)
	if err != nil {
		return err
	}
	var writes bool
	plan.walk(func(n planNode) { writes = writes || n.NodeType == "ModifyTable" })
	if writes {
		return errors.New("the query modifies data; reveal queries must only read")
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, query, nil)
	if err != nil {
		return fmt.Errorf("the query fails in a read-only transaction: %w", err)
	}
	cols, err := rows.Columns()
	if err == nil {
		err = rows.Close()
	}
	if err != nil {
		return fmt.Errorf("the query fails in a read-only transaction: %w", err)
	}
	if len(cols) != 1 {
		return fmt.Errorf("the query returns %d columns; it must return exactly one, the identifier's value", len(cols))
	}
	return nil
}

// checkParams asks the server to describe stmt (the Parse and Describe of
// PostgreSQL's extended protocol, which is what PREPARE does) and requires
// exactly one parameter. Parsing through the protocol also refuses a string
// holding several statements.
func checkParams(ctx context.Context, conn *sql.Conn, stmt string) error {
	var n int
	err := conn.Raw(func(dc any) error {
		p, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("the database driver cannot describe statements")
		}
		st, err := p.PrepareContext(ctx, stmt)
		if err != nil {
			return err
		}
		n = st.NumInput()
		return st.Close()
	})
	switch {
	case err != nil:
		return fmt.Errorf("the database rejects the statement: %w", err)
	case n != 1:
		return fmt.Errorf("the statement takes %d parameters; it must take exactly one, $1, the identifier's value", n)
	}
	return nil
}

// planNode is the part of EXPLAIN (FORMAT JSON)'s output the checks read.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Operation string     `json:"Operation"`
	Plans     []planNode `json:"Plans"`
}

func (n planNode) walk(visit func(planNode)) {
	visit(n)
	for _, c := range n.Plans {
		c.walk(visit)
	}
}

// explain returns the plan of stmt with $1 NULL. EXPLAIN without ANALYZE
// does not execute the statement; it still resolves every table, column
// and privilege. The read-only transaction around it is a second guard.
func explain(ctx context.Context, conn *sql.Conn, stmt string) (planNode, error) {
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return planNode{}, err
	}
	defer tx.Rollback()
	var out []byte
	if err := tx.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+stmt, nil).Scan(&out); err != nil {
		return planNode{}, fmt.Errorf("the database cannot plan the statement: %w", err)
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(out, &plans); err != nil || len(plans) != 1 {
		return planNode{}, errors.New("the database's plan of the statement is unreadable")
	}
	return plans[0].Plan, nil
}
