/** The benches' command-line flags: `--name` switches and `--name value` / `--name=value` options. */
export function benchArgs(argv: string[] = process.argv.slice(2)) {
  return {
    argv,
    flag: (n: string) => argv.includes(n),
    opt: (n: string): string | undefined => {
      const i = argv.indexOf(n);
      if (i >= 0) return argv[i + 1];
      return argv.find((x) => x.startsWith(`${n}=`))?.slice(n.length + 1);
    },
  };
}
