from agent_sessions.cli import main

main()
