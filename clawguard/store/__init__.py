"""Storage: the Store contract and one package per engine (sqlite, postgres), each owning its
driver, its SQL and its migrations. A store loads, applies what core decided, and commits."""
