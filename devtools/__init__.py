"""Development support shared by tests/ and benchmarks/ (never imported by the
application): a server-lifecycle helper, a throwaway PostgreSQL server and an
independent pandas reference for the people filter.

It is not part of the installed package; both `python -m pytest` and
`python -m benchmarks.<name>`, run from the repository root, import it from there.
"""
