/**
 * Whether a process with this pid exists: for files named after (or holding the pid of) the
 * process that made them, to tell a live holder from a leftover of one that died.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
