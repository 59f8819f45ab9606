"""The use cases: one function per interaction or event.

Each opens the one session, runs the rules (orchestration/) in one transaction, wakes the
scheduler when it changed something that can make work, and returns a frozen result that a
cog, the command line or the demo only shows.
"""
