from setuptools import find_packages, setup

setup(
    name="apd",
    version="0.1.0",
    description="Postfix SMTP access-policy server, drop-in compatible with iRedAPD",
    packages=find_packages(include=["apd", "apd.*", "admin"]),
    package_data={"apd.store": ["ddl/*.sql", "ddl/*/*.sql"]},
    python_requires=">=3.9",
    # prometheus_client: its multiprocess mode sums the prefork workers' metrics (METRICS_LISTEN)
    install_requires=["dnspython>=2.0", "py-radix==1.1.0", "prometheus_client>=0.17"],
    extras_require={
        "mysql": ["PyMySQL>=1.0"],
        # the C driver, used when installed (it compiles: libmariadb-dev pkg-config); PyMySQL stays the fallback
        "mysql-c": ["mysqlclient>=2.2", "PyMySQL>=1.0"],
        "pgsql": ["psycopg2-binary>=2.9"],
        "ldap": ["python-ldap>=3.4"],
        "test": ["pytest>=7"],
    },
    entry_points={
        "console_scripts": [
            "apd = apd.cli:main",
            "apd-spf-to-greylist-whitelists = admin.spf_to_greylist_whitelists:main",
            "apd-wblist-admin = admin.wblist_admin:main",
            "apd-greylisting-admin = admin.greylisting_admin:main",
            "apd-throttle-admin = admin.throttle_admin:main",
            "apd-cleanup-db = admin.cleanup_db:main",
            "apd-senderscore-admin = admin.senderscore_admin:main",
            "apd-migrate-cluebringer-greylisting = admin.migrate_cluebringer_greylisting:main",
            "apd-migrate-cluebringer-throttle = admin.migrate_cluebringer_throttle:main",
            "apd-fix-throttle-priority = admin.fix_throttle_priority:main",
        ]
    },
)
