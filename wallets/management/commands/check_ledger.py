from django.core.management.base import BaseCommand, CommandError

from wallets.models import Account, LedgerTransaction
from wallets.selectors import ledger_problems


class Command(BaseCommand):
    help = (
        "Prove the ledger: every account's balance equals the sum of its postings and every "
        "transaction sums to zero over two or more postings, and every posting's balance after is "
        "its account's running sum. Exits non-zero naming the first account, transaction or "
        "posting that does not."
    )

    def handle(self, *args, **options):
        problems = ledger_problems()
        if problems:
            for problem in problems[:20]:
                self.stderr.write(problem.message)
            raise CommandError(f"Ledger does not balance: {problems[0].message}")
        self.stdout.write(
            f"Ledger balances: {Account.objects.count()} accounts, "
            f"{LedgerTransaction.objects.count()} transactions."
        )
