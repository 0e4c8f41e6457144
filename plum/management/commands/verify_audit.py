from django.core.management.base import BaseCommand, CommandError

from plum.services.audit import audit_verify


class Command(BaseCommand):
    help = "Recompute the audit log's hashes and seal chain; exit non-zero at the first break."

    def handle(self, *args, **options):
        events, seals, problems = audit_verify()
        if problems:
            for problem in problems[:20]:
                self.stderr.write(problem.message)
            raise CommandError(
                f"Audit log broken: {problems[0].message} "
                f"({len(problems)} problem(s) in {events} events, {seals} seals)"
            )
        self.stdout.write(f"Audit log intact: {events} events, {seals} seals.")
